"""``vespid loadtest``: load an endpoint through its control plane, report what it did."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from vespid.cli.call import endpoint_api_key
from vespid.client.call import error_line
from vespid.errors import ConfigError, VespidError
from vespid.loadtest.display import watch
from vespid.loadtest.payloads import (
    APIS,
    CycledPayloads,
    GeneratedPayloads,
    PayloadSource,
    load_payload_file,
)
from vespid.loadtest.plot import check_plot_path
from vespid.loadtest.report import render_text
from vespid.loadtest.run import Watch, load_test, save_outputs, session_test
from vespid.loadtest.runner import LoadPlan, Progress
from vespid.loadtest.sessions import SessionPlan
from vespid.runtime import stop_event

__all__ = ["loadtest"]

EPILOG = """\b
Examples:
  vespid loadtest -e my-llm -n 40 --rps 2 --json out.json --plot out.html
  vespid loadtest -e my-llm -n 200 -c 8 --payload prompts.jsonl
  vespid loadtest -e my-null --sessions -n 3 --interval 30 --plateau 300
"""


def _plot_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None:
        try:
            check_plot_path(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _positive(min_open: bool = True) -> click.FloatRange:
    return click.FloatRange(min=0, min_open=min_open)


@click.command(epilog=EPILOG)
@click.option("-e", "--endpoint", required=True, help="Endpoint name.")
@click.option(
    "-n",
    "count",
    type=click.IntRange(min=1),
    default=None,
    help="Requests to send [default: 100]; with --sessions, sessions to open [default: 3].",
)
@click.option(
    "-rps", "--rps", type=_positive(), default=None, help="Requests started per second (open loop)."
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Requests in flight at once (closed loop); with --rps, a cap on them.",
)
@click.option(
    "-k",
    "--api-key",
    envvar="VESPID_API_KEY",
    default=None,
    help="Account or endpoint API key [env: VESPID_API_KEY; default: looked up with the "
    "admin key, VESPID_ADMIN_KEY or STATE_DIR/admin.key, as vespid call does].",
)
@click.option(
    "--url",
    envvar="VESPID_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Control plane base URL [env: VESPID_URL].",
)
@click.option(
    "--api",
    type=click.Choice(APIS),
    default="openai",
    show_default=True,
    help="Built-in payload generator (and cost rule for --payload).",
)
@click.option(
    "--payload",
    "payload_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Payloads: a JSON value or array, or JSON lines; cycled.",
)
@click.option(
    "--path", default=None, help="Worker path [default: /v1/completions, /generate or / by --api]."
)
@click.option(
    "--cost",
    type=_positive(min_open=False),
    default=None,
    help="Workload of every request [default: max tokens; 100 for generic].",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Generated requests ask for between half of this and all of it.",
)
@click.option(
    "--stream",
    is_flag=True,
    help="Generated requests ask for a streamed answer (real time to first byte).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generator.")
@click.option(
    "--timeout",
    type=_positive(),
    default=600.0,
    show_default=True,
    help="Seconds for one request (or one session open), queueing included.",
)
@click.option(
    "--max-time",
    type=_positive(),
    default=3600.0,
    show_default=True,
    help="Seconds for the whole run; then what is in flight is cancelled.",
)
@click.option(
    "--poll-interval",
    type=_positive(),
    default=5.0,
    show_default=True,
    help="Longest wait between two polls of a queued request (the client's cap).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report as JSON here.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=_plot_path,
    help="Write charts here: .html (with the text report) or .svg.",
)
@click.option("--no-progress", is_flag=True, help="No live progress display.")
@click.option(
    "--sessions",
    is_flag=True,
    help="Session demo: open -n sessions one by one, hold, close one by one.",
)
@click.option(
    "--interval",
    type=_positive(min_open=False),
    default=30.0,
    show_default=True,
    help="--sessions: seconds between two opens, and between two closes.",
)
@click.option(
    "--plateau",
    type=_positive(min_open=False),
    default=300.0,
    show_default=True,
    help="--sessions: seconds to hold every session open.",
)
@click.option(
    "--session-cost",
    type=_positive(min_open=False),
    default=100.0,
    show_default=True,
    help="--sessions: workload of each session.",
)
@click.option(
    "--lifetime",
    type=_positive(),
    default=None,
    help="--sessions: session lifetime [default: the whole run plus a minute].",
)
def loadtest(**opts: Any) -> None:  # fmt: skip
    """Load ENDPOINT through the control plane and report latency, throughput and workers.

    Sends -n requests at --rps per second, or -c at a time, made by --api's
    generator or read from --payload; prints a live view on stderr and a report
    on stdout. With --sessions, runs the session demo instead.
    """
    try:
        report = _run(opts)
    except ConfigError as exc:
        click.echo(f"vespid loadtest: {exc}", err=True)
        sys.exit(2)
    except VespidError as exc:
        click.echo(error_line(exc), err=True)
        sys.exit(1)
    click.echo(render_text(report), nl=False)
    try:
        save_outputs(report, json_path=opts["json_path"], plot_path=opts["plot_path"])
    except OSError as exc:
        click.echo(f"vespid loadtest: cannot write the report ({exc})", err=True)
        sys.exit(1)
    for label, path in (("json", opts["json_path"]), ("plot", opts["plot_path"])):
        if path is not None:
            click.echo(f"{label:<12} {path}")


def _run(o: dict[str, Any]) -> dict[str, Any]:
    """The run the options ask for; Ctrl-C (or SIGTERM) stops it early, and it still reports."""
    show: Watch | None = None
    if not o["no_progress"]:
        tty = sys.stderr.isatty()

        async def show(progress: Callable[[], Progress], done: asyncio.Event) -> None:
            await watch(progress, done, stream=sys.stderr, tty=tty, title=o["endpoint"])

    if o["sessions"]:
        given = [f"--{k}" for k in ("rps", "concurrency", "payload_file") if o[k] is not None]
        if given:
            raise click.UsageError(f"--sessions opens sessions; it takes no {', '.join(given)}")
        plan_s = _session_plan(o)

        async def main() -> dict[str, Any]:
            return await session_test(
                url=o["url"], api_key=await _api_key(o), plan=plan_s, stop=stop_event(),
                watch=show, max_poll_interval_s=o["poll_interval"],
            )  # fmt: skip

    else:
        plan, payloads, source = _request_plan(o)

        async def main() -> dict[str, Any]:
            return await load_test(
                url=o["url"], api_key=await _api_key(o), plan=plan, payloads=payloads,
                source=source, stop=stop_event(), watch=show,
                max_poll_interval_s=o["poll_interval"],
            )  # fmt: skip

    return asyncio.run(main())


async def _api_key(o: dict[str, Any]) -> str:
    """``-k``, else the endpoint's key looked up with the admin key, as ``vespid call`` does."""
    return o["api_key"] or await endpoint_api_key(o["url"], o["endpoint"])


def _session_plan(o: dict[str, Any]) -> SessionPlan:
    return SessionPlan(
        endpoint=o["endpoint"],
        sessions=o["count"] or 3,
        interval_s=o["interval"],
        plateau_s=o["plateau"],
        cost=o["session_cost"],
        lifetime_s=o["lifetime"],
        open_timeout_s=o["timeout"],
        max_time_s=o["max_time"],
    )


def _request_plan(o: dict[str, Any]) -> tuple[LoadPlan, PayloadSource, str]:
    plan = LoadPlan(
        endpoint=o["endpoint"],
        requests=o["count"] or 100,
        rps=o["rps"],
        concurrency=o["concurrency"],
        timeout_s=o["timeout"],
        max_time_s=o["max_time"],
    )
    if o["payload_file"] is not None:
        bodies = load_payload_file(o["payload_file"])
        cycled = CycledPayloads(bodies, api=o["api"], path=o["path"], cost=o["cost"])
        return plan, cycled, f"{len(bodies)} payload(s) from {o['payload_file']} to {cycled.path}"
    generated = GeneratedPayloads(
        o["api"], max_tokens=o["max_tokens"], stream=o["stream"], path=o["path"],
        cost=o["cost"], seed=o["seed"],
    )  # fmt: skip
    return plan, generated, f"{o['api']} {generated.path}, generated"
