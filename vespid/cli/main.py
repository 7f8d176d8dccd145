"""``vespid`` and its subcommands."""

from __future__ import annotations

import click

from vespid import __version__
from vespid.cli.call import call
from vespid.cli.control import control, endpoint
from vespid.cli.demo import demo
from vespid.cli.loadtest import loadtest
from vespid.cli.simulate import simulate_command
from vespid.cli.worker import worker

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vespid")
def cli() -> None:
    """vespid: serverless GPU inference, from the worker beside a model server to the autoscaler."""


cli.add_command(worker)
cli.add_command(call)
cli.add_command(control)
cli.add_command(endpoint)
cli.add_command(demo)
cli.add_command(loadtest)
cli.add_command(simulate_command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
