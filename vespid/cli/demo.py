"""``vespid demo``: the main job on embedded defaults."""

from __future__ import annotations

import sys

import click

from vespid.cli.worker import run_async

__all__ = ["demo"]


@click.command()
@click.option("--max-tokens", default=64, show_default=True, help="Length of the completion.")
def demo(max_tokens: int) -> None:
    """Serve Gemma 3 270M with llama.cpp behind a vespid worker and stream a completion."""
    from vespid.demo import run_demo

    def out(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    async def main() -> None:
        await run_demo(out=out, max_tokens=max_tokens)

    run_async(main)
