"""``vespid demo``: the control plane serving Gemma 3 270M on CPU, scaled from zero."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from vespid.cli.invocation import how_to_run
from vespid.runtime import on_stop_signals, run_async

__all__ = ["demo"]


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@click.command()
@click.option("--max-tokens", default=64, show_default=True, help="Length of the completion.")
@click.option("--prompt", default=None, help="Text to complete (Gemma 3 270M is a base model).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port of the control plane and its status page (8080 taken: any free port).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the control plane's state and the workers' logs here "
    "[default: a temporary directory, removed at the end].",
)
@click.option(
    "--model",
    default="gemma",
    show_default=True,
    help="'gemma' (Gemma 3 270M, from its Python package) or the path of a GGUF file.",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Stop everything once the completion is printed, instead of keeping the page up.",
)
def demo(
    max_tokens: int, prompt: str | None, port: int, state_dir: Path | None, model: str,
    no_wait: bool,
) -> None:  # fmt: skip
    """Serve Gemma 3 270M on llama.cpp behind vespid's control plane, scaled from zero.

    Starts the control plane with one endpoint, streams a completion through the
    client SDK (the first request starts the first worker), prints it as it arrives,
    and keeps the status page up until Ctrl-C, which stops every process it started.
    """
    from vespid.demo import PROMPT, DemoFailed, run_demo

    again = how_to_run()

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        stopping = False

        def stop() -> None:
            nonlocal stopping
            if not stopping:  # a second Ctrl-C must not cut the clean-up short
                stopping = True
                _out("\nstopping…\n")
                task.cancel()

        on_stop_signals(stop)
        try:
            await run_demo(
                out=_out,
                max_tokens=max_tokens,
                prompt=prompt or PROMPT,
                model=model,
                state_dir=state_dir,
                port=port,
                wait=not no_wait,
                command=again.command,
                activate=again.activate,
            )
        except asyncio.CancelledError:
            if not stopping:
                raise
            _out("stopped: every process the demo started has exited\n")

    try:
        run_async(main)
    except DemoFailed as exc:
        click.echo(f"\nvespid demo: {exc}", err=True)
        sys.exit(1)
