"""Loading handlers named in ``VESPID_HANDLERS`` (``module:attribute``, comma-separated)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from vespid.errors import ConfigError
from vespid.handlers.base import Handler

__all__ = ["check_handlers", "load_handlers"]


def _as_handlers(spec: str, value: object) -> list[Handler[Any]]:
    if isinstance(value, type) and issubclass(value, Handler):
        try:
            value = value()
        except TypeError as exc:
            raise ConfigError(
                f"VESPID_HANDLERS: cannot create {spec} without arguments ({exc})"
            ) from None
    if isinstance(value, Handler):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        found = list(value)
        if found and all(isinstance(h, Handler) for h in found):
            return found
    raise ConfigError(
        f"VESPID_HANDLERS: {spec} is not a Handler, a Handler class or a list of Handlers"
    )


def load_handlers(specs: Iterable[str]) -> list[Handler[Any]]:
    """Import each ``module:attribute``; ConfigError naming VESPID_HANDLERS when one fails."""
    handlers: list[Handler[Any]] = []
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"VESPID_HANDLERS: cannot import {module_name!r} ({exc})") from None
        if not hasattr(module, attr):
            raise ConfigError(f"VESPID_HANDLERS: {module_name!r} has no {attr!r}")
        handlers.extend(_as_handlers(spec, getattr(module, attr)))
    return check_handlers(handlers)


def check_handlers(handlers: list[Handler[Any]]) -> list[Handler[Any]]:
    """Refuse handlers without a path and two handlers for the same route."""
    seen: dict[tuple[str, str], Handler[Any]] = {}
    for handler in handlers:
        if not handler.path.startswith("/"):
            raise ConfigError(
                f"handler {type(handler).__name__}: path must start with '/' (got {handler.path!r})"
            )
        route = (handler.method.upper(), handler.path)
        if route in seen:
            raise ConfigError(
                f"handlers {type(seen[route]).__name__} and {type(handler).__name__} both "
                f"serve {route[0]} {route[1]}"
            )
        seen[route] = handler
    return handlers
