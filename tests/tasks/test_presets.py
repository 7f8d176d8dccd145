"""Presets and task settings: every mistake is one line naming the file, model and field."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.tasks.conftest import EXAMPLES
from tests.worker.conftest import MakeWorker
from vespid.errors import ConfigError
from vespid.tasks.presets import load_presets, parse_presets
from vespid.worker.settings import load_worker_settings

FILE = Path("presets.yaml")
REPO = Path(__file__).parents[2]


def model(inference: str) -> str:
    return f"models:\n  m:\n    inference:\n{inference}"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(
            "models: [a\n  b: c",
            "presets.yaml: not valid YAML at line 2, column 4: expected ',' or ']', but got ':'",
            id="yaml-syntax",
        ),
        pytest.param(
            "- a\n- b",
            "presets.yaml: needs a top-level 'models:' mapping of model names",
            id="list",
        ),
        pytest.param(
            "models: {}", "presets.yaml: 'models' is empty; register at least one model", id="empty"
        ),
        pytest.param(
            "models: {m: {inference: {command: [x]}}}\ngpus: 2",
            "presets.yaml: unknown top-level field 'gpus' (only 'models')",
            id="top-level-extra",
        ),
        pytest.param(
            "models:\n  my model:\n    inference: {command: [x]}",
            "presets.yaml: model 'my model': the name must be letters, digits, '.', '_' or '-' "
            "(it is part of the URL /tasks/<model>)",
            id="model-name",
        ),
        pytest.param(
            "models:\n  m:\n    training: {}",
            "presets.yaml: model 'm': needs an 'inference:' mapping",
            id="no-inference",
        ),
        pytest.param(
            "models:\n  m:\n    inference: [python]",
            "presets.yaml: model 'm': inference: must be a mapping",
            id="inference-list",
        ),
        pytest.param(
            model("      env_vars: {A: 1}"),
            "presets.yaml: model 'm': inference: needs docker_image or command (or both)",
            id="nothing-to-run",
        ),
        pytest.param(
            model("      command: python worker.py"),
            "presets.yaml: model 'm': inference.command: must be a non-empty list of strings, "
            """e.g. ["python", "worker.py"] (got 'python worker.py')""",
            id="command-string",
        ),
        pytest.param(
            model("      command: [python, 3]"),
            "presets.yaml: model 'm': inference.command: every item must be a non-empty string",
            id="command-item",
        ),
        pytest.param(
            model("      docker_image: 5"),
            "presets.yaml: model 'm': inference.docker_image: Input should be a valid string "
            "(got 5)",
            id="image-type",
        ),
        pytest.param(
            model("      command: [x]\n      env_vars: {GPU_DEVICE: 0}"),
            "presets.yaml: model 'm': inference.env_vars: GPU_DEVICE is set by vespid for each "
            "task; remove it",
            id="reserved-env",
        ),
        pytest.param(
            model("      command: [x]\n      env_vars: {A: [1, 2]}"),
            "presets.yaml: model 'm': inference.env_vars: A: value must be a string or a number",
            id="env-value",
        ),
        pytest.param(
            model("      command: [x]\n      env_vars: {1A: x}"),
            "presets.yaml: model 'm': inference.env_vars: '1A' is not a valid variable name",
            id="env-name",
        ),
        pytest.param(
            model("      command: [x]\n      timeout_s: 0"),
            "presets.yaml: model 'm': inference.timeout_s: Input should be greater than 0 (got 0)",
            id="timeout",
        ),
        pytest.param(
            model("      command: [x]\n      session: sometimes"),
            "presets.yaml: model 'm': inference.session: Input should be a valid boolean, "
            "unable to interpret input (got 'sometimes')",
            id="session",
        ),
        pytest.param(
            model("      command: [x]\n      gpu: 1"),
            "presets.yaml: model 'm': inference.gpu: unknown field",
            id="unknown-field",
        ),
    ],
)
def test_presets_mistake_is_one_line(text: str, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_presets(text, FILE)
    assert str(info.value) == line


def test_seed_format_and_extensions_load() -> None:
    presets = parse_presets(
        """
models:
  test-loading:
    inference:
      docker_image: "loading-worker:latest"
      command: ["python", "/app/worker.py"]
      env_vars:
        MODEL_NAME: "test-loading"
        LOAD_STEPS: 3
        VERBOSE: true
      timeout_s: 30
      model_path: weights
""",
        Path("/srv/tasks/presets.yaml"),
    )
    preset = presets.models["test-loading"]
    assert preset.inference.command == ("python", "/app/worker.py")
    assert preset.inference.env_vars == {
        "MODEL_NAME": "test-loading",
        "LOAD_STEPS": "3",
        "VERBOSE": "true",
    }
    assert preset.model_path == Path("/srv/tasks/weights")
    assert presets.needs_docker


def test_the_examples_presets_file_is_valid() -> None:
    presets = load_presets(EXAMPLES / "model_presets.yaml")
    assert sorted(presets.models) == ["test-loading", "test-text"]
    assert presets.models["test-text"].inference.session
    for preset in presets.models.values():
        command = preset.inference.command
        assert command is not None
        assert (preset.directory / command[1]).is_file()


def test_missing_file_names_it() -> None:
    with pytest.raises(ConfigError, match=r"^/nonexistent/p\.yaml: cannot read \(No such file"):
        load_presets(Path("/nonexistent/p.yaml"))


@pytest.mark.parametrize(
    ("env", "line"),
    [
        pytest.param(
            {"VESPID_TASKS": "p.yaml", "BACKEND_URL": "http://127.0.0.1:1"},
            "VESPID_TASKS: leave BACKEND_URL unset; the worker runs the tasks",
            id="both",
        ),
        pytest.param(
            {"VESPID_TASKS": "p.yaml", "VESPID_GPUS": "0,0"},
            "VESPID_GPUS: a GPU is listed twice (got '0,0')",
            id="gpus-twice",
        ),
        pytest.param(
            {"VESPID_TASKS": "p.yaml", "VESPID_GPUS": "0,device=1"},
            "VESPID_GPUS: each GPU must be an index or a UUID (got 'device=1')",
            id="gpus-form",
        ),
        pytest.param(
            {"VESPID_TASKS": "p.yaml", "VESPID_TASK_QUEUE_SIZE": "-1"},
            "VESPID_TASK_QUEUE_SIZE: Input should be greater than or equal to 0 (got '-1')",
            id="queue-size",
        ),
    ],
)
def test_task_settings_mistake_is_one_line(env: dict[str, str], line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_worker_settings({"UNSECURED": "true", **env})
    assert str(info.value) == line


def test_task_settings_gpus_forms() -> None:
    def gpus(value: str | None) -> list[str] | None:
        env = {"UNSECURED": "true", "VESPID_TASKS": "p.yaml"}
        return load_worker_settings(env if value is None else {**env, "VESPID_GPUS": value}).gpus

    assert gpus(None) is None  # detected at start
    assert gpus("") == [] == gpus("none")
    assert gpus(" 0, 1 ") == ["0", "1"]
    assert gpus("GPU-5f3a-77") == ["GPU-5f3a-77"]


async def test_worker_with_bad_presets_does_not_start(
    make_worker: MakeWorker, tmp_path: Path
) -> None:
    path = tmp_path / "p.yaml"
    await asyncio.to_thread(path.write_text, model("      command: [x]\n      timeout_s: -1"))
    with pytest.raises(ConfigError, match=r"model 'm': inference\.timeout_s"):
        await make_worker(VESPID_TASKS=str(path), UNSECURED="true", VESPID_GPUS="")


async def test_cli_prints_the_presets_mistake_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    await asyncio.to_thread(path.write_text, model("      command: python x.py"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from vespid.cli.main import main; main()",
        "worker", "--tasks", str(path), "--unsecured", "true",
        env={"PYTHONPATH": str(REPO), "VESPID_GPUS": "", "WORKER_PORT": "0",
             "VESPID_HOST": "127.0.0.1", "VESPID_LOG_LEVEL": "error"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert out == b""
    assert err.decode().splitlines() == [
        f"vespid worker: {path}: model 'm': inference.command: must be a non-empty list of "
        """strings, e.g. ["python", "worker.py"] (got 'python x.py')"""
    ]
