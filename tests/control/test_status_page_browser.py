"""The status page in a real headless browser (Debian's Chromium, driven by Playwright),
against a real control plane whose worker is llama.cpp on the tiny test model."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, async_playwright

from tests.control.conftest import MakeControl, admin
from tests.control.test_scaling_e2e import complete, llama_endpoint

CHROMIUM = Path(os.environ.get("VESPID_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM} (make test installs Debian's; or set VESPID_CHROMIUM)",
)


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    """A page in a fresh headless Chromium profile; nothing is downloaded."""
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            yield context.pages[0] if context.pages else await context.new_page()
        finally:
            await context.close()


async def chart(page: Page, name: str) -> tuple[int, float, str]:
    """A chart's sample count, its highest value drawn, and its pixels (as a data URL)."""
    box = page.locator(f'.chart[data-chart="{name}"]')
    points = int(await box.get_attribute("data-points") or 0)
    peak = float(await box.get_attribute("data-peak") or 0)
    pixels: str = await box.locator("canvas").evaluate("c => c.toDataURL()")
    return points, peak, pixels


async def chart_above(page: Page, name: str, key: str, above: float) -> None:
    """Wait until a chart's ``data-<key>`` exceeds ``above`` (the page redraws each second)."""
    await page.wait_for_function(
        "([name, key, above]) => "
        "Number(document.querySelector(`.chart[data-chart='${name}']`).dataset[key]) > above",
        arg=[name, key, above],
        timeout=10_000,
    )


async def test_page_shows_a_worker_appear_and_its_charts_move(
    make_control: MakeControl, http: aiohttp.ClientSession, tiny_model: Path, page: Page,
    tmp_path: Path,
) -> None:  # fmt: skip
    control = await make_control()
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", llama_endpoint(tiny_model))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    await page.goto(control.url + "/")
    card = page.locator('section[data-endpoint="llm"]')
    await card.locator("td.none", has_text="no workers").wait_for(timeout=10_000)
    await page.locator('#live[data-state="live"]').wait_for(timeout=10_000)
    before = await chart(page, "requests")
    assert before[1] == 0  # no request yet

    answer = await complete(http, control, ep["api_key"])  # scales from zero
    assert answer["usage"]["completion_tokens"] == 4

    # The worker appears, ready, with its measured throughput.
    row = card.locator('tr[data-worker="1"][data-state="ready"]')
    await row.wait_for(timeout=15_000)
    assert "20/s" in await row.inner_text()  # VESPID_MAX_PERF of the test endpoint
    await page.locator("#log tr", has_text="start").first.wait_for(timeout=5_000)

    # The charts move: the request shows in the request-rate series, and the canvases are
    # redrawn as samples arrive each second.
    await chart_above(page, "requests", "peak", 0)
    await chart_above(page, "workers", "peak", 0)
    after = await chart(page, "requests")
    assert after[0] > before[0]
    assert after[2] != before[2]
    await chart_above(page, "requests", "points", after[0])  # the next sample
    assert (await chart(page, "requests"))[2] != after[2]

    # Where the request waited: the router's queue (while the worker started) and the
    # worker's own, from its /delete_requests/ report; both tiles and both chart series
    # are labelled, and the worker's figure appears once the worker has reported.
    tiles = card.locator(".stats")
    assert "router queue wait, max (10 s)" in (await tiles.text_content() or "")
    assert "worker queue wait, max (10 s)" in (await tiles.text_content() or "")
    assert "time in worker, max (10 s)" in (await tiles.text_content() or "")
    await page.wait_for_function(  # the tiles are redrawn each second: query afresh
        "() => document.querySelector("
        "`section[data-endpoint='llm'] [data-stat='worker-wait'] .v`).textContent !== '–'",
        timeout=10_000,
    )
    assert (await card.locator('[data-stat="worker-wait"] .v').inner_text()).endswith("s")
    # The completion took some time at the model server: more than "0 s".
    assert await card.locator('[data-stat="worker-time"] .v').inner_text() not in ("–", "0 s")
    await chart_above(page, "worker-time", "peak", 0)
    finished = card.locator('[data-stat="finished"]')
    assert "req/s" in await finished.inner_text()
    legend = await card.locator('.chart[data-chart="wait"] .legend').inner_text()
    assert [label in legend for label in ("router max", "router mean", "worker max",
                                          "worker mean")] == [True] * 4  # fmt: skip
    # The workers' table says what its figures count.
    assert "served (workload)" in (await card.locator("thead").text_content() or "")

    shots = Path(os.environ.get("VESPID_SCREENSHOTS", tmp_path))
    await page.screenshot(path=shots / "status-page.png", full_page=True)
    assert not errors, errors


async def test_page_shows_parked_workers_rollout_and_park_wake_actions(
    make_control: MakeControl, http: aiohttp.ClientSession, tiny_model: Path, page: Page,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Reservoir mode (the default) on llama.cpp: the worker is parked after 2 s idle, then
    woken by the next request; the page shows its revision, its phase and how long it was
    parked, the endpoint's parked workers and seconds and its rollout, and the park and
    wake actions in the log as such."""
    control = await make_control()
    spec = llama_endpoint(tiny_model, reservoir_workers=6, park_timeout=0)
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", spec)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(control.url + "/")
    card = page.locator('section[data-endpoint="llm"]')
    await card.locator("td.none", has_text="no workers").wait_for(timeout=10_000)
    assert "rev 1" in await card.locator('[data-stat="rollout"]').inner_text()

    await complete(http, control, ep["api_key"])  # starts the worker; idle 2 s: parked
    row = card.locator('tr[data-worker="1"][data-state="parked"]')
    await row.wait_for(timeout=30_000)
    cells = await row.locator("td").all_inner_texts()
    assert cells[1] == "1"  # its revision
    assert cells[2].startswith("parked")
    assert await card.locator('[data-stat="parked"] .v').inner_text() == "1"
    await page.wait_for_function(  # parked seconds count up, redrawn each second
        "() => document.querySelector("
        "`section[data-endpoint='llm'] [data-stat='parked-s'] .v`).textContent !== '0 s'",
        timeout=10_000,
    )
    assert "rollout done" in (await card.locator('[data-stat="rollout"]').text_content() or "")
    assert "park_timeout never" in (await card.locator(".params").text_content() or "")
    await page.locator('#log [data-action="park"]', has_text="park").wait_for(timeout=5_000)

    await complete(http, control, ep["api_key"])  # served by waking it
    await card.locator('tr[data-worker="1"][data-state="ready"]').wait_for(timeout=15_000)
    await page.locator('#log [data-action="wake"]', has_text="wake").wait_for(timeout=5_000)
    assert not await page.locator('#log [data-action="start"]').count() > 1
    await chart_above(page, "workers", "peak", 0)
    legend = await card.locator('.chart[data-chart="workers"] .legend').inner_text()
    assert [st in legend for st in ("waking", "draining", "parked")] == [True] * 3
    legend = await card.locator('.chart[data-chart="scaling"] .legend').inner_text()
    assert "woken" in legend

    shots = Path(os.environ.get("VESPID_SCREENSHOTS", tmp_path))
    await page.screenshot(path=shots / "status-page-parked.png", full_page=True)
    assert not errors, errors
