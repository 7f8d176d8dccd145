"""A fresh install of this checkout, and a shell that runs doc commands against it.

``fresh_install`` copies the checkout's files to a temporary clone and runs install commands
there in a new venv; ``Shell`` runs one doc's commands with bash in that clone, with the
venv's bin first on PATH, the doc's variables set, and servers started, waited for and
stopped.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.docs.commands import ROOT, DocCommand

__all__ = ["Shell", "Venv", "check_status_page", "clean_env", "fresh_install"]


@dataclass(frozen=True)
class Venv:
    """A new venv with a clone installed in it; ``installs``: each install command's result."""

    bin: Path
    clone: Path
    installs: dict[str, subprocess.CompletedProcess[str]]


def copy_checkout(dest: Path) -> Path:
    """The checkout's files as a clone would have them (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def clean_env(bin_dir: Path) -> dict[str, str]:
    """This environment with ``bin_dir`` first on PATH and nothing pointing at the checkout."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VESPID_") and k not in drop}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(bin_dir.parent))
    return env


def fresh_install(base: Path, *commands: str) -> Venv:
    """A clone in ``base/vespid``, a venv in ``base/venv``, and ``commands`` (``pip install
    ...``) run by bash in the clone, each of which must exit 0."""
    clone = copy_checkout(base / "vespid")
    subprocess.run([sys.executable, "-m", "venv", base / "venv"], check=True)
    env = clean_env(base / "venv" / "bin")
    installs = {}
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        installs[command] = done
    return Venv(base / "venv" / "bin", clone, installs)


@dataclass
class Shell:
    """Runs one doc's commands with bash, in an environment that points them here: the
    tiny model where the docs say ``--model gemma``, ``worker_port`` where they say 3000."""

    env: dict[str, str]
    cwd: Path
    model: Path
    worker_port: int
    logs: Path
    variables: list[str] = field(default_factory=list)  # the doc's NAME=value lines so far
    servers: int = 0  # started so far, to name their logs

    @property
    def url(self) -> str:
        return self.env["VESPID_URL"]

    def script(self, command: DocCommand, *, exec_: bool = False) -> str:
        """The command after the doc's variables, with this test's model and worker port;
        ``exec_``: without its ``&``, in bash's place."""
        text = command.text.replace("--model gemma", f"--model {shlex.quote(str(self.model))}")
        port = str(self.worker_port)
        text = re.sub(r"(?<=--worker-port )3000\b|(?<=127\.0\.0\.1:)3000\b", port, text)
        if exec_:
            text = "exec " + re.sub(r"\s&\s*(#.*)?$", "", text)
        return "\n".join([*self.variables, text])

    async def run(self, command: DocCommand) -> tuple[int, str, str]:
        """Exit status, stdout and stderr."""
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", self.script(command), cwd=self.cwd, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    @asynccontextmanager
    async def serve(self, command: DocCommand) -> AsyncIterator[Path]:
        """A server command: started, waited for until it answers, then stopped (SIGTERM,
        which it must answer with exit status 0); yields the path of its log."""
        self.servers += 1
        log_path = self.logs / f"{self.servers}-{command.words[1]}.log"
        log = await asyncio.to_thread(log_path.open, "wb")
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", self.script(command, exec_=True), cwd=self.cwd, env=self.env,
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        try:
            await until_up(self.ready_url(command), proc)
            yield log_path
        finally:
            code = await stop(proc)
            log.close()
        assert code == 0, f"{command.text} exited with {code} when stopped"

    def ready_url(self, command: DocCommand) -> str:
        """What answers 200 once the server is up: a worker's metrics, else the control
        plane's status."""
        if command.kind == "vespid worker":
            return f"http://127.0.0.1:{self.worker_port}/metrics"
        return self.url + "/api/v0/status"


async def until_up(url: str, proc: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(30):
        while proc.returncode is None:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)  # then ask again, until the deadline
    raise AssertionError(f"exited with {proc.returncode} before {url} answered")


async def stop(proc: asyncio.subprocess.Process) -> int:
    """SIGTERM, then SIGKILL to the whole group after 20 s; the exit status."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(20):
                return await proc.wait()
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
    return await proc.wait()


async def check_status_page(url: str, clone: Path) -> None:
    """``GET /`` and the page's script and style serve the clone's files: what an install
    must ship besides the code."""
    static = clone / "vespid" / "control" / "static"
    pages = {
        "/": "index.html",
        "/static/status.js": "status.js",
        "/static/status.css": "status.css",
    }
    async with aiohttp.ClientSession() as http:
        for path, name in pages.items():
            async with http.get(url + path) as resp:
                assert resp.status == 200, path
                shipped = await asyncio.to_thread((static / name).read_bytes)
                assert await resp.read() == shipped, path
