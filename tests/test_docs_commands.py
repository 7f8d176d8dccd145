"""Every shell command README.md and docs/*.md show, run as written from a fresh install.

Once per session, the checkout's files are copied to a temporary clone, a new venv is made
and the README's ``pip install .`` runs in the clone (then ``pip install '.[llamacpp]'``,
which the README names for llama.cpp's server). Each doc's commands (tests/docs/commands.py
says which lines are commands) then run in order, by bash, in the clone, with that venv's bin
first on PATH and no PYTHONPATH: ``vespid`` is the installed package, and ``vespid control``
started from it must serve the status page's files.

Each doc starts afresh: the environment the docs name (``VESPID_CONTROL_PORT``,
``VESPID_URL``, ``VESPID_STATE_DIR``, ``VESPID_HOST``) points its commands at a free port on
127.0.0.1 and a temporary state directory instead of 8080, every interface and ``~/.vespid``;
``NAME=value`` lines stay set for the doc's later commands; ``cmd &`` keeps running until the
doc's end, and a server run in the foreground is stopped once it answers. Two substitutions
keep it quick and private: the tiny generated model (tests/support/tiny_gguf.py) where the
docs say ``--model gemma``, and a free port where docs/tasks.md says 3000. A command that runs
must exit 0 and print the line ``PRINTS`` expects; one that cannot run here is in ``NOT_RUN``
with the reason; a command in the docs that is neither fails the test.
"""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.docs.commands import DOCS, ROOT, DocCommand, all_commands, doc_commands, entry, starts
from tests.docs.shell import Shell, Venv, check_status_page, clean_env, fresh_install
from vespid.servers.process import free_port

INSTALL = "pip install ."  # the README's; the session's venv fixture runs it, once
EXTRAS = "pip install '.[llamacpp]'"  # the README's words for llama.cpp's server
TRACE = Path("shared") / "traces" / "AzureLLMInferenceTrace_code.csv"  # beside the checkout

# Commands that cannot run here or in a test's time, by the words they start with.
NOT_RUN = {
    "make demo": "serves until Ctrl-C; tests/test_demo.py runs `vespid demo` as a subprocess",
    "make test": "what CI runs: ruff, mypy and the whole test suite, this test included",
    "make test-comfyui": "installs a real ComfyUI into .venv-comfyui: about 1.7 GB, minutes",
    "pip install vespid @ git+https://github.com/<owner>/vespid": "<owner> is a placeholder "
    "for the GitHub account, and GitHub is another machine",
    "BACKEND_URL=http://127.0.0.1:8000": "a worker beside your model server, reporting to your "
    "autoscaler (https://your-autoscaler is a placeholder); tests/worker run it against real "
    "servers",
    "vespid loadtest -e my-null --sessions": "7 minutes: 3 sessions opened 30 s apart, held "
    "300 s, closed 30 s apart; tests/loadtest runs the session demo with short intervals",
    "export VESPID_API_KEY=$(.venv/bin/python": "reads the key of a running `make demo`, which "
    "serves the real Gemma for minutes",
    "bash /workspace/vast-pyworker/start_server.sh": "a Vast instance's on-start command, in "
    "the clone Vast's bootstrap made; tests/vast/test_start_server.py runs the script with "
    "Vast's variables from a fresh copy of the checkout",
    "ray start": "starts a node of a Ray cluster spread over machines (docs/deploy.md); "
    "tests/control/test_ray_cluster.py runs a head and a second node on this machine",
    "VESPID_PROVIDER=ray VESPID_RAY_ADDRESS=10.0.0.2:6379": "joins a Ray cluster on other "
    "machines; tests/control/test_ray_cluster.py runs a control plane joined to a real one",
    ".venv/bin/vespid loadtest -e llm": "needs `make demo` running, takes about 3 minutes on "
    "the real Gemma, and rewrites docs/loadtest-demo.svg",
}
# What a command that runs prints: a regex one line of its stdout (a server's: its log) matches.
PRINTS = {
    INSTALL: r"^Successfully installed .*\bvespid-\d",
    "vespid control": r"vespid control listening on http://127\.0\.0\.1:\d+ ",
    "vespid worker": r"worker listening host=127\.0\.0\.1 port=\d+",
    "vespid endpoint create": r'^  "api_key": "[\w-]+",$',
    "vespid call": r"\S",
    "vespid loadtest": r"^requests +(\d+) asked: \1 sent, \1 ok, 0 failed",
    "vespid simulate": r"^vespid +\d+ ",
    "python bench/autoscaler_trace.py": r"^vespid p99 <= 10 s; active worker-s / cheapest "
    r"fixed pool \(fixed \d+\): \d",
    "curl -N http://127.0.0.1:3000/tasks/test-loading": r'^data: \{"event": "finish", '
    r'"status": "completed"\}$',
    "curl http://127.0.0.1:3000/tasks/test-text": r'"text":"You said: hi"',
}
# What a doc's commands need that no command of that doc makes: docs/client.md and
# docs/loadtest.md call `my-llm`, made as the README makes `llm`; loadtest.md's payload file.
MY_LLM = (
    "vespid control &",
    "vespid endpoint create my-llm --env HEALTHCHECK_ENDPOINT=/health "
    '--model-command "python -m vespid.servers.llamacpp --model gemma --port {model_port}"',
)
SETUP = {
    "docs/client.md": MY_LLM,
    "docs/loadtest.md": (
        *MY_LLM,
        """printf '%s\\n' '{"prompt": "Hello", "max_tokens": 16}' """
        """'{"prompt": "Once upon a time", "max_tokens": 32}' > prompts.jsonl""",
    ),
}


def runs(command: DocCommand) -> bool:
    return entry(NOT_RUN, command) is None


def test_every_doc_command_is_run_or_listed_with_a_reason() -> None:
    commands = all_commands()
    unchecked = [
        c.text for c in commands if runs(c) and not c.sets_variables and not entry(PRINTS, c)
    ]
    assert not unchecked, "neither in NOT_RUN nor in PRINTS"
    stale = [key for key in NOT_RUN if not any(starts(c, key) for c in commands)]
    assert not stale, "in NOT_RUN but in no doc"
    # The README's quick start is among them, and needs no key on the command line.
    readme = [c.kind for c in commands if c.doc == "README.md" and runs(c)]
    assert [k for k in readme if k.startswith("vespid ")] == [
        "vespid control",
        "vespid endpoint",
        "vespid call",
    ]
    assert all("--api-key" not in c.text for c in commands if c.kind == "vespid call")


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(c, id=f"{c.doc}:{key}", marks=pytest.mark.skip(reason=NOT_RUN[key]))
        for c in all_commands()
        if (key := entry(NOT_RUN, c))
    ],
)
def test_doc_commands_not_run(command: DocCommand) -> None:
    raise AssertionError("listed in NOT_RUN: " + command.text)


@pytest.fixture(scope="session")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    base = tmp_path_factory.mktemp("docs")
    if (ROOT.parent / TRACE).is_file():  # the trace replay's default --trace
        (base / "shared").symlink_to(ROOT.parent / "shared")
    return fresh_install(base, INSTALL, EXTRAS)


@pytest.fixture
def shell(tmp_path: Path, tiny_model: Path, venv: Venv) -> Shell:
    port = free_port()
    env = clean_env(venv.bin)
    env.update(
        VESPID_CONTROL_PORT=str(port),
        VESPID_URL=f"http://127.0.0.1:{port}",
        VESPID_CONTROL_HOST="127.0.0.1",
        VESPID_HOST="127.0.0.1",
        VESPID_STATE_DIR=str(tmp_path / "state"),
        VESPID_CACHE_DIR=str(tmp_path / "cache"),
        # A control plane stopped at the end of a doc stops its workers: no process left.
        VESPID_STOP_WORKERS_ON_EXIT="true",
    )
    for name in ("state", "logs"):
        (tmp_path / name).mkdir()
    return Shell(env, venv.clone, tiny_model, free_port(), tmp_path / "logs")


def check_output(command: DocCommand, out: str) -> None:
    """A line of what the command printed, as the docs promise it; nothing, where PRINTS
    expects nothing (a variable set, a SETUP file written)."""
    key = entry(PRINTS, command)
    if key is None:
        assert not out.strip(), f"{command.text}\n{out}"
        return
    assert re.search(PRINTS[key], out, re.M), f"{command.text}\n{out}"
    if command.kind == "vespid endpoint":
        assert json.loads(out)["name"] == command.words[3]
    elif command.kind == "vespid call":
        assert out.endswith("\n"), out  # streamed text, then a newline
        assert '"choices"' not in out  # the text, not the answer's JSON


async def step(shell: Shell, venv: Venv, command: DocCommand, servers: AsyncExitStack) -> None:
    """Run one command; check its exit status and a line of its output."""
    if command.line == INSTALL:  # run by the venv fixture, in the clone
        check_output(command, venv.installs[INSTALL].stdout)
    elif command.kind in ("vespid control", "vespid worker"):
        if command.background:
            log = await servers.enter_async_context(shell.serve(command))
        else:
            async with shell.serve(command) as log:
                pass
        check_output(command, await asyncio.to_thread(log.read_text))
        if command.kind == "vespid control":
            await check_status_page(shell.url, venv.clone)
    else:
        code, out, err = await shell.run(command)
        assert code == 0, f"{command.doc}: {command.text}\n{out}\n{err}"
        check_output(command, out)
        if command.sets_variables:
            shell.variables.append(command.text)


def missing_trace(venv: Venv, command: DocCommand) -> bool:
    """The trace replay's default ``--trace`` is not in the repository but beside it."""
    replay = starts(command, "python bench/autoscaler_trace.py")
    return replay and not (venv.clone.parent / TRACE).is_file()


@pytest.mark.timeout(360)  # the first one makes the venv
@pytest.mark.parametrize("doc", [d for d in DOCS if any(runs(c) for c in doc_commands(d))])
async def test_doc_commands_run_as_written(doc: str, shell: Shell, venv: Venv) -> None:
    """In order, after the doc's SETUP; ``cmd &`` keeps running until the doc's end."""
    setup = [DocCommand(doc, text) for text in SETUP.get(doc, ())]
    not_here = []
    async with asyncio.timeout(120), AsyncExitStack() as servers:
        for command in [*setup, *(c for c in doc_commands(doc) if runs(c))]:
            if missing_trace(venv, command):
                not_here.append(command.text)
            else:
                await step(shell, venv, command, servers)
    if not_here:
        pytest.skip(f"{TRACE} is not beside this checkout, for: {not_here}")
