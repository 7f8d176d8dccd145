"""``vespid demo`` as a real subprocess: the bundled Gemma model, scale from zero, the status
page, and Ctrl-C leaving no process behind."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import stat
import sys
from pathlib import Path

import aiohttp
import pytest

from vespid.demo import PROMPT

ROOT = Path(__file__).resolve().parent.parent
ENTRY = "from vespid.cli.main import main; main()"
SUGGESTED = " call llm /v1/completions "


def processes_in(state_dir: Path) -> list[int]:
    """Pids of live processes whose output goes to a log under ``state_dir`` (the demo's
    workers and model servers do)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "fd" / "1").readlink().is_relative_to(state_dir):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return found


async def start_demo(state_dir: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", ENTRY, "demo", "--port", "0", "--state-dir", str(state_dir), *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def read_until(proc: asyncio.subprocess.Process, text: str, seen: list[str]) -> str:
    """Lines of the demo's output until one contains ``text``."""
    assert proc.stdout is not None
    while not any(text in line for line in seen):
        line = await proc.stdout.readline()
        if not line:
            raise AssertionError(f"the demo ended before printing {text!r}:\n{''.join(seen)}")
        seen.append(line.decode())
    return "".join(seen)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to find leftover processes")
async def test_demo_streams_gemma_from_zero_and_leaves_nothing(tmp_path: Path) -> None:
    """The README's first command, without waiting: Gemma 3 270M answers through the
    control plane, started from zero workers, and every process is gone at the end."""
    state = tmp_path / "state"  # made by the demo, as `make demo` makes .vespid-demo
    proc = await start_demo(state, "--no-wait", "--max-tokens", "16")
    async with asyncio.timeout(120):
        out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    assert re.search(r"status page +http://127\.0\.0\.1:\d+/", text)
    assert "no worker yet" in text
    assert "the router queued it and the autoscaler started worker 1" in text
    assert "worker 1 is ready" in text
    streamed = re.search(r"first token:\n\n(.*)\n\n(\d+) tokens: the first [\d.]+ s", text, re.S)
    assert streamed, text
    assert streamed[1].startswith(PROMPT)
    assert len(streamed[1]) > len(PROMPT)
    assert 1 <= int(streamed[2]) <= 16
    assert "Ctrl-C" not in text  # --no-wait: it did not wait
    assert not processes_in(tmp_path)
    assert (state / "logs" / "model-1.log").exists()  # --state-dir keeps the logs
    # Private from the start: nothing for the control plane to narrow and warn about.
    assert "readable or writable by others" not in text
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in [state, *state.iterdir()]}
    assert modes["state"] == modes["logs"] == 0o700
    assert modes["endpoints.yaml"] == modes["vespid.db"] == 0o600


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to find leftover processes")
async def test_demo_keeps_the_page_up_until_ctrl_c_then_stops_everything(
    tmp_path: Path, tiny_model: Path
) -> None:
    proc = await start_demo(tmp_path, "--model", str(tiny_model), "--max-tokens", "8")
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            text = await read_until(proc, SUGGESTED, seen)
        match = re.search(r"status page +(http://127\.0\.0\.1:\d+)/", text)
        assert match, text
        assert "first token" in text
        async with aiohttp.ClientSession() as http:
            async with http.get(match[1] + "/") as resp:
                assert resp.status == 200
                assert "vespid" in await resp.text()
            async with http.get(match[1] + "/api/v0/status") as resp:
                (endpoint,) = (await resp.json())["endpoints"]
        assert [w["state"] for w in endpoint["workers"]] == ["ready"]
        assert len(processes_in(tmp_path)) == 2  # the worker and its llama.cpp server

        # The command the demo suggests for more requests runs as printed (no bare
        # `vespid`, which is not on PATH after `make demo`), and streams.
        [suggested] = [line for line in text.splitlines() if SUGGESTED in line]
        command = shlex.split(suggested)[0]
        assert command != "vespid" or shutil.which("vespid"), suggested
        assert '"stream"' not in suggested  # --stream asks for it
        call = await asyncio.create_subprocess_shell(
            suggested.strip(), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(30):
            answer, errors = await call.communicate()
        assert call.returncode == 0, errors
        assert answer.strip()
        assert answer.endswith(b"\n")
        assert b'"choices"' not in answer  # text pieces, not one JSON answer

        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rest, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, "".join(seen) + rest.decode()
    assert "every process the demo started has exited" in rest.decode()
    assert not processes_in(tmp_path)
    assert os.listdir(tmp_path / "logs")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to find leftover processes")
async def test_demo_stops_at_once_when_the_model_cannot_load(tmp_path: Path) -> None:
    """A broken model does not leave the demo waiting while the autoscaler replaces
    worker after worker: it stops, shows the model server's log, and cleans up."""
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    proc = await start_demo(tmp_path / "state", "--no-wait", "--model", str(bad))
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 1, text
    assert "vespid demo: worker 1 failed: it stopped before it was ready" in text
    assert "model-1.log" in text
    assert "failed to load model" in text  # llama.cpp's own words, from its log
    assert not processes_in(tmp_path)
