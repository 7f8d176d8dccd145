"""Real Ray nodes for tests: each a ``ray start --block`` process on this machine, joined
into one cluster, and stopped by pid: the node's process tree (its raylet, its actors and
everything they started), as a machine that goes away would be. ``ray stop`` would stop
every node on the machine.

Run as ``python -m tests.control.ray_cluster ADDRESS LOG_DIR COUNT``, it is a control
plane's Ray side that dies without stopping its workers: it starts COUNT null workers
through a ``RayProvider`` joined to the cluster at ADDRESS, prints each handle as a JSON
line, then waits to be killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from vespid.control.models import EndpointConfig, WorkerTemplate
from vespid.control.providers.base import WorkerHandle, WorkerOrder
from vespid.control.providers.ray import RayProvider
from vespid.servers.process import proc_stat

__all__ = ["RAY_ENV", "RayNode", "RayStartFailed", "handle_from_json", "running"]

# Token authentication off: the cluster is on this machine and lives for one test module
# (a real cluster shares a token with every node: docs/deploy.md).
RAY_ENV: Final = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
START_TIMEOUT_S: Final = 60.0


class RayStartFailed(RuntimeError):
    """``ray start`` exited before its node was up."""


def _children() -> dict[int, list[int]]:
    """Every process's children, by parent pid, from ``/proc``."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        fields = proc_stat(entry) if entry.isdigit() else None
        if fields is not None and len(fields) > 1:
            tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def process_tree(root: int) -> set[int]:
    """``root`` and every process descending from it."""
    children, found, todo = _children(), {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] not in (b"Z", b"X")


@dataclass
class RayNode:
    """One Ray node: a ``ray start --block`` process leading its own session."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    address: str = ""  # the cluster's address (``ip:port``) as a head prints it

    @classmethod
    def start(cls, log_path: Path, *args: str) -> RayNode:
        """Start a node (``args`` go to ``ray start``); return once it is up."""
        argv = [str(Path(sys.executable).with_name("ray")), "start", "--block", "--num-cpus=1",
                "--disable-usage-stats", "--dashboard-agent-listen-port=0", *args]  # fmt: skip
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, **RAY_ENV},
            )  # fmt: skip
        node = cls(proc, log_path)
        try:
            node._wait_started()
            if "--head" in args:
                node.address = node._printed_address()
        except BaseException:
            node.stop()
            raise
        return node

    def _wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"Ray runtime started" not in self.log_path.read_bytes():
            if self.proc.poll() is not None:
                lines = self.log_path.read_text(errors="replace").strip().splitlines()
                raise RayStartFailed(lines[-1] if lines else f"exit code {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"ray start: no node within {START_TIMEOUT_S:g} s")
            time.sleep(0.1)

    def _printed_address(self) -> str:
        found = re.search(r"ray start --address='([^']+)'", self.log_path.read_text())
        if found is None:
            raise RuntimeError(f"no cluster address in {self.log_path}")
        return found.group(1)

    def stop(self) -> set[int]:
        """Freeze the node's whole process tree (SIGSTOP: nothing new starts), then
        SIGKILL it; the pids it had (none once stopped)."""
        frozen: set[int] = set()
        if self.proc.returncode is not None:
            return frozen
        while new := process_tree(self.proc.pid) - frozen:
            for pid in new:
                _signal(pid, signal.SIGSTOP)
            frozen |= new
        for pid in frozen:
            _signal(pid, signal.SIGKILL)
        self.proc.wait()
        return frozen


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def handle_from_json(line: str | bytes) -> WorkerHandle:
    fields: dict[str, Any] = json.loads(line)
    return WorkerHandle(**{**fields, "gpus": tuple(fields["gpus"])})


async def _start_and_crash(address: str, log_dir: Path, count: int) -> None:
    provider = RayProvider(log_dir, address=address)
    await provider.open()
    endpoint = EndpointConfig(
        name="null", template=WorkerTemplate(env={"VESPID_LOG_LEVEL": "warning"})
    )
    for worker_id in range(1, count + 1):
        # Reports go to a port nobody serves: nothing here stops the worker.
        order = WorkerOrder(worker_id, endpoint, "http://127.0.0.1:9", master_token="t")
        handle = await provider.start(order)
        print(json.dumps(dataclasses.asdict(handle)), flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(_start_and_crash(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))
