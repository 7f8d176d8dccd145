"""The ``vespid ...`` commands README.md and docs/client.md show, run as written.

A command is a line of a ```` ```sh ```` block, or a ``$ ``-prompted line of any block
(continuation lines joined); the other blocks show output. Each ``vespid`` command is run
by bash, in order, against a control plane on 127.0.0.1 with real workers: ``vespid`` on
PATH is this checkout's, and the environment the docs name (``VESPID_CONTROL_PORT``,
``VESPID_URL``, ``VESPID_STATE_DIR``) points the commands at a free port and a temporary
state directory instead of 8080 and ``~/.vespid``. One substitution keeps it quick: the
model server serves the tiny generated model (tests/support/tiny_gguf.py) where the docs
say ``--model gemma``. Commands that need another machine are in ``SKIPPED`` with the
reason; a command in the docs that is neither run nor skipped fails the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from vespid.servers.process import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/client.md")
SHELL_BLOCKS = ("sh", "bash", "shell", "console")
# What each kind of command needs here: run (in the docs' order), or skipped and why.
RUN = ("vespid control", "vespid endpoint", "vespid call")
SKIPPED = {
    "vespid worker": "needs your model server at BACKEND_URL (127.0.0.1:8000) and your "
    "autoscaler at REPORT_ADDR (https://your-autoscaler), another machine's",
}
# What a doc's commands need that no doc command makes: docs/client.md calls `my-llm`,
# made as the README makes `llm`.
SETUP = {
    "docs/client.md": "vespid endpoint create my-llm --env HEALTHCHECK_ENDPOINT=/health "
    '--model-command "python -m vespid.servers.llamacpp --model gemma --port {model_port}"',
}


@dataclass(frozen=True)
class DocCommand:
    doc: str
    text: str  # as written, continuation lines joined

    @property
    def words(self) -> list[str]:
        """The command's words after any ``NAME=value`` assignments; no comment, no ``&``."""
        words = shlex.split(self.text, comments=True)
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words.pop(0)
        return words[:-1] if words[-1:] == ["&"] else words

    @property
    def kind(self) -> str:
        """``vespid SUBCOMMAND``."""
        return " ".join(self.words[:2])

    @property
    def background(self) -> bool:
        return shlex.split(self.text, comments=True)[-1] == "&"


def doc_commands(doc: str) -> Iterator[DocCommand]:
    """The ``vespid`` commands of ``doc``, in order."""
    text = (ROOT / doc).read_text()
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        lines = body.replace("\\\n", " ").splitlines()
        for line in lines:
            if line.startswith("$ "):
                line = line[2:]
            elif lang not in SHELL_BLOCKS:
                continue
            command = DocCommand(doc, line.strip())
            if command.text and command.words[:1] == ["vespid"]:
                yield command


def all_commands() -> list[DocCommand]:
    return [command for doc in DOCS for command in doc_commands(doc)]


def test_every_doc_command_is_run_or_skipped_with_a_reason() -> None:
    commands = all_commands()
    assert {c.kind for c in commands} <= set(RUN) | set(SKIPPED), [c.text for c in commands]
    # The README's quick start is among them, and needs no key on the command line.
    kinds = [c.kind for c in commands if c.doc == "README.md" and c.kind in RUN]
    assert kinds == ["vespid control", "vespid endpoint", "vespid call"]
    assert all("--api-key" not in c.text for c in commands if c.kind == "vespid call")


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(c, id=c.kind, marks=pytest.mark.skip(reason=SKIPPED[c.kind]))
        for c in all_commands()
        if c.kind in SKIPPED
    ],
)
def test_doc_commands_needing_another_machine(command: DocCommand) -> None:
    raise AssertionError("skipped: " + command.text)


@dataclass
class Shell:
    """Runs doc commands with bash, in an environment that points them here."""

    env: dict[str, str]
    url: str
    model: Path

    def script(self, command: DocCommand | str) -> str:
        text = command.text if isinstance(command, DocCommand) else command
        return text.replace("--model gemma", f"--model {shlex.quote(str(self.model))}")

    async def run(self, command: DocCommand | str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", self.script(command), cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    @asynccontextmanager
    async def background(self, command: DocCommand) -> AsyncIterator[None]:
        """``command &``: started, waited for until the control plane answers, stopped after."""
        foreground = re.sub(r"\s&\s*(#.*)?$", "", self.script(command))
        log = await asyncio.to_thread((Path(self.env["VESPID_STATE_DIR"]) / "bg.log").open, "wb")
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", "exec " + foreground, cwd=ROOT, env=self.env,
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        try:
            await self._until_up(proc)
            yield
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(20):
                        await proc.wait()
                except TimeoutError:
                    os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()
            log.close()

    async def _until_up(self, proc: asyncio.subprocess.Process) -> None:
        async with aiohttp.ClientSession() as http, asyncio.timeout(30):
            while proc.returncode is None:
                try:
                    async with http.get(self.url + "/api/v0/status") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)  # then ask again, until the deadline
        raise AssertionError(f"`vespid control` exited with {proc.returncode}")


@pytest.fixture
def shell(tmp_path: Path, tiny_model: Path) -> Shell:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    vespid = bin_dir / "vespid"
    vespid.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m vespid.cli.main "$@"\n')
    vespid.chmod(0o755)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VESPID_")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        VESPID_CONTROL_PORT=str(port),
        VESPID_URL=url,
        VESPID_STATE_DIR=str(tmp_path / "state"),
        VESPID_CACHE_DIR=str(tmp_path / "cache"),
    )
    (tmp_path / "state").mkdir()
    return Shell(env, url, tiny_model)


def check_output(command: DocCommand, out: str) -> None:
    """A line of what the command printed, as the docs promise it."""
    if command.kind == "vespid endpoint":
        assert json.loads(out)["name"] == command.words[3]
    elif command.kind == "vespid call":
        assert out.strip(), out
        assert out.endswith("\n"), out  # streamed text, then a newline
        assert '"choices"' not in out  # the text, not the answer's JSON


async def test_doc_commands_run_as_written(shell: Shell) -> None:
    """In order; ``cmd &`` keeps running until the end; SETUP runs before a doc's first."""
    async with asyncio.timeout(100), AsyncExitStack() as running:
        docs_begun: set[str] = set()
        for command in [c for c in all_commands() if c.kind in RUN]:
            if command.background:
                await running.enter_async_context(shell.background(command))
                continue
            if command.doc not in docs_begun and command.doc in SETUP:
                code, _, err = await shell.run(SETUP[command.doc])
                assert code == 0, err
            docs_begun.add(command.doc)
            code, out, err = await shell.run(command)
            assert code == 0, f"{command.doc}: {command.text}\n{err}"
            check_output(command, out)
