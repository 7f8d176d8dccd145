"""Loading settings from the environment and flags, with one-line errors naming the variable.

Each settings model (``WorkerSettings``, ``ControlSettings``) is a frozen pydantic
model whose fields carry their environment variable in ``json_schema_extra["env"]``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from vespid.errors import ConfigError

__all__ = ["env_name", "format_validation_error", "load_settings"]

S = TypeVar("S", bound=BaseModel)


def env_name(model: type[BaseModel], field: str) -> str:
    """The environment variable a field reads."""
    extra = model.model_fields[field].json_schema_extra
    assert isinstance(extra, dict), f"{model.__name__}.{field} names no env variable"
    return str(extra["env"])


def format_validation_error(
    exc: ValidationError, names: Mapping[str, str], secret: Collection[str] = ()
) -> str:
    """One line per problem, naming the variable: ``MAX_WAIT_TIME: ... (got 'abc')``.
    The value of a ``secret`` field is never shown."""
    lines = []
    for err in exc.errors():
        message = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:
            lines.append(message)  # a cross-field check: its message names the variable
            continue
        var = names.get(str(err["loc"][0]), str(err["loc"][0]))
        got = err.get("input")
        shown = (
            isinstance(got, str | int | float)
            and "(got " not in message
            and err["loc"][0] not in secret
        )
        lines.append(f"{var}: {message}" + (f" (got {got!r})" if shown else ""))
    return "; ".join(lines)


def load_settings(
    model: type[S],
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
    *,
    names: Mapping[str, str] | None = None,
) -> S:
    """Settings from an environment and flag overrides (which win); ConfigError on a mistake.

    ``names`` overrides the variable name of some fields (for names built at run time).
    """
    flags = {key: value for key, value in (overrides or {}).items() if value is not None}
    all_names = {field: env_name(model, field) for field in model.model_fields}
    all_names.update(names or {})
    values: dict[str, Any] = {f: environ[n] for f, n in all_names.items() if n in environ}
    values.update(flags)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        secret = {
            name
            for name, field in model.model_fields.items()
            if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("secret")
        }
        raise ConfigError(format_validation_error(exc, all_names, secret)) from None
