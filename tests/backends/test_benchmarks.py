"""Each built-in benchmark against its server: a real llama.cpp, and the TGI, Ollama and
ComfyUI stand-ins. A worker runs it, becomes ready with its figure, and logs it."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from tests.worker.conftest import MakeWorker
from vespid.benchmarks.comfyui import image_workload
from vespid.benchmarks.words import load_words, prompt, prompt_length
from vespid.testing.comfyui import ComfyUIStandIn
from vespid.testing.ollama import OllamaStandIn
from vespid.testing.tgi import TGIStandIn
from vespid.worker.lifecycle import WorkerState


def _completed(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Benchmark complete" in r.getMessage()]


async def test_openai_benchmark_on_llama_cpp(
    make_worker: MakeWorker, llama_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The default settings, as BENCHMARK names them; the tiny model's 512-token context
    makes the benchmark shorten its prompts instead of failing."""
    caplog.set_level(logging.INFO, logger="vespid")
    worker = await make_worker(
        BACKEND_URL=llama_url,
        UNSECURED="true",
        HEALTHCHECK_ENDPOINT="/health",
        BENCHMARK="vespid.benchmarks.openai:benchmark",
    )
    max_perf = worker.worker.lifecycle.max_perf
    assert max_perf is not None
    assert max_perf > 0
    assert _completed(caplog) == [f"Benchmark complete: {max_perf:.1f} workload/s"]
    assert any("prompts now up to" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("stand_in", "spec"),
    [
        pytest.param("tgi", "vespid.benchmarks.tgi:benchmark", id="tgi"),
        pytest.param("ollama", "vespid.benchmarks.ollama:benchmark", id="ollama"),
        pytest.param("comfy", "tests.support.bench_funcs:comfy_small", id="comfyui"),
    ],
)
async def test_benchmark_ramps_until_throughput_stops_rising(
    make_worker: MakeWorker,
    stand_ins: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    stand_in: str,
    spec: str,
) -> None:
    caplog.set_level(logging.INFO, logger="vespid")
    url = stand_ins[stand_in]
    worker = await make_worker(BACKEND_URL=url, UNSECURED="true", BENCHMARK=spec)
    max_perf = worker.worker.lifecycle.max_perf
    assert max_perf is not None
    assert max_perf > 0
    assert _completed(caplog) == [f"Benchmark complete: {max_perf:.1f} workload/s"]
    levels = [r.getMessage() for r in caplog.records if " -> " in r.getMessage()]
    assert len(levels) >= 2  # it climbed, then stopped when the gain fell under 10 %


async def test_tgi_and_ollama_figures_follow_their_engines_capacity(
    make_worker: MakeWorker,
    tgi: tuple[TGIStandIn, str],
    ollama: tuple[OllamaStandIn, str],
) -> None:
    """4 slots at 1 ms a token: at most ~4000 tokens/s, and well above one slot's ~1000."""
    for url, spec in ((tgi[1], "tgi"), (ollama[1], "ollama")):
        worker = await make_worker(
            BACKEND_URL=url, UNSECURED="true", BENCHMARK=f"vespid.benchmarks.{spec}:benchmark"
        )
        max_perf = worker.worker.lifecycle.max_perf
        assert max_perf is not None
        assert 1200 < max_perf < 4000, (spec, max_perf)


@pytest.mark.parametrize(
    ("spec", "backend", "reason"),
    [
        pytest.param(
            "vespid.benchmarks.tgi:benchmark", "ollama", "Text Generation Inference", id="tgi"
        ),
        pytest.param("vespid.benchmarks.ollama:benchmark", "tgi", "Ollama", id="ollama"),
        pytest.param("vespid.benchmarks.comfyui:benchmark", "tgi", "ComfyUI", id="comfyui"),
        pytest.param(
            "vespid.benchmarks.openai:benchmark", "comfy", "OpenAI-compatible", id="openai"
        ),
    ],
)
async def test_benchmark_against_the_wrong_server_errors_the_worker_with_the_reason(
    make_worker: MakeWorker,
    stand_ins: dict[str, str],
    spec: str,
    backend: str,
    reason: str,
) -> None:
    url = stand_ins[backend]
    worker = await make_worker(wait_ready=False, BACKEND_URL=url, UNSECURED="true", BENCHMARK=spec)
    await worker.wait_state(WorkerState.ERRORED)
    message = worker.worker.lifecycle.error_msg
    assert "404" in message, message
    assert reason in message, message


async def test_comfyui_benchmark_without_a_checkpoint_and_txt2img_refuses(
    make_worker: MakeWorker, comfy: tuple[ComfyUIStandIn, str]
) -> None:
    _, url = comfy
    worker = await make_worker(
        wait_ready=False,
        BACKEND_URL=url,
        UNSECURED="true",
        BENCHMARK="tests.support.bench_funcs:comfy_txt2img",
    )
    await worker.wait_state(WorkerState.ERRORED)
    assert "lists no checkpoint" in worker.worker.lifecycle.error_msg


def test_image_workload_worked_example() -> None:
    """512 x 512 at 20 steps: 512 * 512 * 20 / 1000 = 5242.88."""
    assert image_workload(512, 512, 20) == 5242.88


def test_prompts_vary_in_length_within_bounds_and_use_the_shipped_words() -> None:
    """Log-uniform in [16, 512]: the median is near sqrt(16 * 512) = 90.5 words."""
    rng = random.Random(7)
    lengths = sorted(prompt_length(rng, 16, 512) for _ in range(2001))
    assert lengths[0] >= 16
    assert lengths[-1] <= 512
    assert 70 <= lengths[1000] <= 110
    words = set(load_words())
    assert len(words) > 900
    text = prompt(random.Random(1), 20, 20)
    assert len(text.split()) == 20
    assert {w.strip(".").lower() for w in text.split()} <= words


async def test_ramp_stops_climbing_once_its_budget_is_spent() -> None:
    """Requests that take 10 ms each scale with concurrency (throughput doubles per level),
    so the ramp climbs to max_concurrency 8 (4 levels); with the budget spent at once, the
    first level's one lane sends a single request and no further level starts."""
    from vespid.benchmarks.ramp import Ramp, ramp

    sent: list[int] = []

    async def one(rng: random.Random) -> float:
        sent.append(1)
        await asyncio.sleep(0.01)
        return 1.0

    unlimited = await ramp(one, name="t", settings=Ramp(max_concurrency=8, budget_s=3600))
    levels_unlimited = len(sent)
    sent.clear()
    limited = await ramp(one, name="t", settings=Ramp(max_concurrency=8, budget_s=0.0))
    assert unlimited > limited > 0
    assert levels_unlimited == 1 + 4 + 4 + 8 + 16  # warm-up, then levels 1, 2, 4, 8
    assert len(sent) == 1 + 1  # warm-up plus one request of the first level


async def test_ramp_budget_counts_from_when_the_caller_began() -> None:
    """A budget already spent before the ramp (a long prompt probe) leaves the first level
    a single request, as if the ramp itself had used it up."""
    import time

    from vespid.benchmarks.ramp import Ramp, ramp

    sent: list[int] = []

    async def one(rng: random.Random) -> float:
        sent.append(1)
        await asyncio.sleep(0.01)
        return 1.0

    settings = Ramp(max_concurrency=8, budget_s=60, warmup_requests=0)
    assert await ramp(one, name="t", settings=settings, started=time.monotonic() - 61) > 0
    assert len(sent) == 1
    sent.clear()
    await ramp(one, name="t", settings=settings, started=time.monotonic())
    assert len(sent) == 4 + 4 + 8 + 16  # the whole climb fits a fresh budget
