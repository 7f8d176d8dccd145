"""Click options the commands share: one flag per settings field, and options in a list.

``setting_options(Model)`` gives each field of a pydantic settings model a
``--field-name`` flag (default None: the environment, then the model's default,
decide). Its help names the environment variable it overrides and shows the model's
default; its metavar says what kind of value it takes (NUMBER, SECONDS, URL, PATH, ...).
``SectionedCommand`` lists a command's options under headings in ``--help``, and
``flag_names`` names the flags a user gave, so a mistake is reported under what was typed.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from vespid.settings import env_name

__all__ = [
    "SectionedCommand",
    "default_text",
    "flag_names",
    "metavar",
    "setting_options",
    "with_options",
]

F = TypeVar("F", bound=Callable[..., Any])

# Metavars by the field's type, after the hints its name gives (see ``metavar``).
_TYPE_METAVARS: dict[type, str] = {
    bool: "BOOL",
    int: "INTEGER",
    float: "NUMBER",
    str: "TEXT",
    Path: "PATH",
    list: "TEXT,...",
}


def flag(field: str) -> str:
    """The flag of a settings field: ``max_wait_time_s`` -> ``--max-wait-time-s``."""
    return "--" + field.replace("_", "-")


def flag_names(flags: Mapping[str, Any]) -> dict[str, str]:
    """The flag each given (not None) setting came from, to name it in an error."""
    return {field: flag(field) for field, value in flags.items() if value is not None}


def _base_type(annotation: Any) -> Any:
    """``int | None`` -> ``int``; ``list[str]`` -> ``list``; others as they are."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else annotation
    return typing.get_origin(annotation) or annotation


def metavar(name: str, field: FieldInfo) -> str:
    """What kind of value a setting takes, from its type and name."""
    base = _base_type(field.annotation)
    if base is typing.Literal:
        return "[" + "|".join(str(v) for v in typing.get_args(field.annotation)) + "]"
    if base in (float, int) and name.endswith("_s"):
        return "SECONDS"
    if base is int and name.endswith("_bytes"):
        return "BYTES"
    if base is int and name.endswith("port"):
        return "PORT"
    if base in (str, list) and name.endswith(("url", "addr")):
        return "URL" if base is str else "URL,..."
    return _TYPE_METAVARS.get(base, "VALUE")


def default_text(field: FieldInfo) -> str | None:
    """The model's default as a user would type it; None when there is none to show."""
    value = field.get_default(call_default_factory=True)
    if value is None or value == [] or value == "":
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _help(description: str | None, env: str, default: str | None) -> str:
    return f"{description} [env {env}" + (f"; default {default}]" if default else "]")


def setting_options(
    model: type[BaseModel],
    rename: Mapping[str, str] | None = None,
    metavars: Mapping[str, str] | None = None,
) -> Callable[[F], F]:
    """One ``--flag`` per settings field, its help naming the variable (``rename`` maps a
    field to the variable's name where it is not the model's own) and the default;
    ``metavars`` overrides the metavar ``metavar`` finds for a field."""
    rename, metavars = rename or {}, metavars or {}
    options = [
        click.option(
            flag(name),
            name,
            default=None,
            metavar=metavars.get(name) or metavar(name, field),
            help=_help(
                field.description,
                rename.get(name) or env_name(model, name),
                default_text(field),
            ),
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


class SectionedCommand(click.Command):
    """A command whose ``--help`` lists its options under headings.

    ``sections`` maps a heading to the names of the parameters under it, in order;
    parameters it does not name (``--help`` among them) come last, under "Other options".
    """

    def __init__(
        self, *args: Any, sections: Mapping[str, Iterable[str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.sections = {heading: list(names) for heading, names in (sections or {}).items()}

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                records[param.name] = record
        for heading, names in self.sections.items():
            rows = [records.pop(name) for name in names if name in records]
            if rows:
                with formatter.section(heading):
                    formatter.write_dl(rows)
        if records:
            with formatter.section("Other options" if self.sections else "Options"):
                formatter.write_dl(list(records.values()))
