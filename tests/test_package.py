"""The package's public surface: exports, error classes, exception mapping, formulas."""

from __future__ import annotations

import importlib
import inspect

import pytest

import vespid.errors
from vespid.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    HTTPFacingError,
    VespidError,
)
from vespid.worker import backend_client
from vespid.worker.backend_client import BackendClientError
from vespid.worker.proxy import BACKEND_ERRORS, map_backend_errors

PACKAGES = [
    "vespid",
    "vespid.errors",
    "vespid.guard",
    "vespid.protocol",
    "vespid.worker",
    "vespid.cli",
    "vespid.client",
    "vespid.control",
    "vespid.benchmarks",
    "vespid.servers",
    "vespid.tasks",
    "vespid.handlers",
    "vespid.compat",
    "vespid.testing",
    "vespid.loadtest",
    "vespid.simulate",
]


def _isort_key(name: str) -> tuple[int, str]:
    """CONSTANTS, then Classes, then functions: the order ruff keeps ``__all__`` in."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key)
    for symbol in exported:
        assert hasattr(module, symbol), symbol


def test_every_error_class_is_exported_and_http_errors_have_a_status() -> None:
    classes = [
        obj
        for obj in vars(vespid.errors).values()
        if inspect.isclass(obj) and issubclass(obj, VespidError)
    ]
    assert sorted(c.__name__ for c in classes) == sorted(vespid.errors.__all__)
    for cls in classes:
        if issubclass(cls, HTTPFacingError) and cls is not HTTPFacingError:
            assert 400 <= cls.status_code < 600, cls
            assert cls.code != HTTPFacingError.code, cls


def _client_errors() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for obj in vars(backend_client).values():
        if inspect.isclass(obj) and issubclass(obj, BackendClientError):
            found.append(obj)
    return found


@pytest.mark.parametrize("exc_type", _client_errors(), ids=lambda c: c.__name__)
def test_every_http_client_error_maps_to_a_specific_backend_error(
    exc_type: type[BaseException],
) -> None:
    """Each of the backend client's exceptions has an entry (itself or a parent) in the
    table, so none falls through to the generic fallback."""
    if exc_type is BackendClientError:
        pytest.skip("the root is what the table refines")
    entries = [t for t, _, _ in BACKEND_ERRORS]
    assert any(issubclass(exc_type, t) for t in entries), exc_type
    for _, error_type, _ in BACKEND_ERRORS:
        assert issubclass(error_type, BackendError)


@pytest.mark.parametrize(
    ("exc", "expected", "text"),
    [
        (backend_client.ConnectFailed("refused"), BackendUnavailable, "refused the connection"),
        (backend_client.ConnectTimeout("slow"), BackendTimeout, "connecting"),
        (backend_client.ReadTimeout("silent"), BackendTimeout, "did not answer in time"),
        (TimeoutError(), BackendTimeout, "did not answer in time"),
        (backend_client.ServerDisconnected("gone"), BackendUnavailable, "closed the connection"),
        (backend_client.BrokenBody("cut"), BackendError, "broken body"),
        (backend_client.InvalidResponse("junk"), BackendError, "invalid response"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_client_errors_become_the_right_http_error(
    exc: BaseException, expected: type[BackendError], text: str
) -> None:
    with pytest.raises(BackendError) as caught, map_backend_errors("http://b:1/x"):
        raise exc
    assert type(caught.value) is expected
    assert text in caught.value.message
    assert "(http://b:1/x)" in caught.value.message
    assert caught.value.__cause__ is exc


def test_wait_estimate_worked_example() -> None:
    """3 requests of cost 100 ahead at 50 workload/s: 300 / 50 = 6 s."""
    from vespid.worker.admission import Admission
    from vespid.worker.metrics import WorkerMetrics

    admission = Admission(limit=None, max_wait_s=5, metrics=WorkerMetrics())
    admission.max_perf = 50
    admission.workload_ahead = 300
    assert admission.estimate_wait_s() == 6.0
