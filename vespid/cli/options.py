"""Click options the commands share: one flag per settings field, and options in a list.

``setting_options(Model)`` gives each field of a pydantic settings model a
``--field-name VALUE`` flag (default None: the environment, then the model's
default, decide), its help naming the environment variable it overrides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click
from pydantic import BaseModel

from vespid.settings import env_name

__all__ = ["setting_options", "with_options"]

F = TypeVar("F", bound=Callable[..., Any])


def setting_options(
    model: type[BaseModel], rename: Mapping[str, str] | None = None
) -> Callable[[F], F]:
    """One ``--flag VALUE`` per settings field, its help naming the variable (``rename``
    maps a field to the variable's name where it is not the model's own)."""
    options = [
        click.option(
            "--" + name.replace("_", "-"),
            name,
            default=None,
            metavar="VALUE",
            help=f"{field.description} [env {(rename or {}).get(name) or env_name(model, name)}]",
        )
        for name, field in model.model_fields.items()
    ]
    return with_options(options)


def with_options(options: Sequence[Callable[[Any], Any]]) -> Callable[[F], F]:
    """Apply ``options`` to a command, listed in ``--help`` in the order given."""

    def add(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return add
