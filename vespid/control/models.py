"""Endpoints as the control plane keeps them: name, API key, scaling parameters, template.

An endpoint file (YAML) lists endpoints under ``endpoints:``; the same fields travel
over HTTP and through ``vespid endpoint create``. The control plane numbers each
endpoint's templates: ``revision`` grows by one with every template change (a change of
scaling alone keeps it), and ``previous_template`` keeps the template before the last
change, for ``vespid endpoint rollback`` (``revise`` and ``rolled_back`` make them).

Unknown keys are refused at every level (the file's top, an endpoint, its scaling, its
template), so a typo in a file stops start-up with one line naming the file, the key's
path and the keys allowed there.
"""

from __future__ import annotations

import difflib
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vespid.control.policy_types import ScalingConfig  # re-exported: it lives beside the policy
from vespid.errors import ConfigError, NotFound, RequestInvalid

__all__ = [
    "KEPT_FIELDS",
    "EndpointConfig",
    "ScalingConfig",
    "WorkerTemplate",
    "find_endpoint",
    "load_endpoints_file",
    "parse_endpoint",
    "parse_endpoints_yaml",
    "revise",
    "rolled_back",
]

# Fields the control plane keeps itself: a body or a file that sets them is refused.
KEPT_FIELDS = ("revision", "previous_template")


class WorkerTemplate(BaseModel):
    """How to start one worker: its model server and the vespid worker before it.

    ``model_command`` may use ``{model_port}``, ``{worker_port}`` and ``{gpus}``; the
    worker gets ``BACKEND_URL=http://127.0.0.1:{model_port}`` and ``env``. Without a
    ``model_command``, or with ``BACKEND: null`` in ``env``, workers are null workers;
    a ``model_command`` then runs beside each as a sidecar and may use
    ``{control_port}`` (the worker's 127.0.0.1 control server, for ``/release``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_command: list[str] | None = Field(
        None, description="Model server command; none for a null worker (BACKEND=null)."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Worker environment.")
    model_env: dict[str, str] = Field(default_factory=dict, description="Model server environment.")
    gpus_per_worker: int = Field(0, ge=0, description="GPUs given to each worker.")
    ready_timeout: float = Field(
        600.0, gt=0, allow_inf_nan=False, description="Seconds a worker may take to be ready."
    )


class EndpointConfig(BaseModel):
    """One endpoint: what clients name, the key they use, how it scales, what it runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    api_key: str = Field(default_factory=lambda: secrets.token_urlsafe(24), min_length=8)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    template: WorkerTemplate = Field(default_factory=WorkerTemplate)
    revision: int = Field(1, ge=1, description="Template revision, kept by the control plane.")
    previous_template: WorkerTemplate | None = Field(
        None, description="The template before the last change (for rollback)."
    )

    def public(self) -> dict[str, Any]:
        """The listing shape Vast's console API uses (``/api/v0/endptjobs/``)."""
        s = self.scaling
        return {
            "id": self.name,
            "endpoint_name": self.name,
            "api_key": self.api_key,
            "min_load": s.min_load,
            "target_util": s.target_util,
            "cold_mult": s.cold_mult,
            "cold_workers": s.cold_workers,
            "max_workers": s.max_workers,
            "inactivity_timeout": s.inactivity_timeout,
            "max_queue_time": s.max_queue_time,
            "target_queue_time": s.target_queue_time,
            "endpoint_state": "active",
            "user_id": 0,
            "created_at": 0.0,
        }


def parse_endpoint(body: Any) -> EndpointConfig:
    """An endpoint from a JSON body; ``RequestInvalid`` (422) naming every bad field, and
    for an unknown one the fields allowed there. A body may not set the fields the
    control plane keeps (``revision``, ``previous_template``)."""
    if kept := _kept_fields(body):
        raise RequestInvalid.listing("endpoint", kept)
    try:
        return EndpointConfig.model_validate(body)
    except ValidationError as exc:
        raise RequestInvalid.listing("endpoint", _problems(exc)) from None


def _kept_fields(body: Any, where: str = "") -> dict[str, str]:
    """The fields the control plane keeps that ``body`` sets, each with why it may not."""
    why = "kept by the control plane: change the template for a new revision, or roll back"
    given = [name for name in KEPT_FIELDS if isinstance(body, dict) and name in body]
    return {f"{where}.{name}" if where else name: why for name in given}


def _problems(exc: ValidationError, where: str = "") -> dict[str, str]:
    """Each bad field's path (``where`` first) and its problem in pydantic's words; an
    unknown field says which fields are allowed beside it."""
    problems: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        field = ".".join([where, *map(str, loc)] if where else map(str, loc)) or "body"
        problem = error["msg"]
        if error["type"] == "extra_forbidden":
            problem = _unknown_key(str(loc[-1]), _fields_at(loc[:-1]))
        problems.setdefault(field, problem)
    return problems


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The fields of the model found at ``loc`` inside an endpoint (``scaling``, ...)."""
    model: type[BaseModel] = EndpointConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        inner = field.annotation if field else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return []
        model = inner
    kept = KEPT_FIELDS if model is EndpointConfig else ()
    return [name for name in model.model_fields if name not in kept]


def _unknown_key(key: str, allowed: list[str]) -> str:
    """``unknown key, did you mean 'ab'? (allowed: ab, c)`` for a key not in ``allowed``."""
    guess = difflib.get_close_matches(key, allowed, n=1)
    hint = f", did you mean {guess[0]!r}?" if guess else ""
    return f"unknown key{hint} (allowed: {', '.join(allowed)})"


def revise(old: EndpointConfig | None, new: EndpointConfig) -> EndpointConfig:
    """``new`` as the next state of ``old``: the same revision if the template is the
    same, else the next one, with ``old``'s template kept as the previous one. Example:
    revision 3 running template A, updated to template B: revision 4, previous A; then a
    scaling change alone: still revision 4, previous A."""
    if old is None:
        return new
    if new.template == old.template:
        update = {"revision": old.revision, "previous_template": old.previous_template}
    else:
        update = {"revision": old.revision + 1, "previous_template": old.template}
    return new.model_copy(update=update)


def rolled_back(endpoint: EndpointConfig) -> EndpointConfig:
    """``endpoint`` back on its previous template, as a new revision (so rolling back
    twice returns to where it was); ``RequestInvalid`` if it has none."""
    if endpoint.previous_template is None:
        raise RequestInvalid(
            f"endpoint {endpoint.name!r} has no previous template to roll back to: its "
            "template never changed"
        )
    return endpoint.model_copy(
        update={
            "template": endpoint.previous_template,
            "previous_template": endpoint.template,
            "revision": endpoint.revision + 1,
        }
    )


def find_endpoint(endpoints: Mapping[str, EndpointConfig], name: object) -> EndpointConfig:
    """The endpoint called ``name``; ``NotFound`` (404) saying where to look."""
    if not isinstance(name, str) or name not in endpoints:
        raise NotFound(f"no endpoint named {name!r}; see GET /api/v0/endptjobs/")
    return endpoints[name]


def load_endpoints_file(path: Path) -> list[EndpointConfig]:
    """Read an endpoints YAML file; ConfigError naming the file and the field on a mistake."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"VESPID_ENDPOINTS_FILE: cannot read {path} ({exc})") from None
    return parse_endpoints_yaml(text, path)


def parse_endpoints_yaml(text: str, path: Path) -> list[EndpointConfig]:
    """The endpoints in YAML ``text`` (from ``path``, named in errors). Every mistake, an
    unknown key at any level included, is a one-line ConfigError: the file, the key's path
    (``endpoints[0].scaling.max_wrokers``) and what is allowed there."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError.from_yaml(path, exc) from None
    if data is None:  # an empty file: no endpoints
        return []
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with the key 'endpoints' at the top")
    if extra := [str(key) for key in data if key != "endpoints"]:
        raise ConfigError(f"{path}: {extra[0]}: {_unknown_key(extra[0], ['endpoints'])}")
    items = data.get("endpoints")
    if items is None:  # "endpoints:" with nothing under it
        return []
    if not isinstance(items, list):
        raise ConfigError(f"{path}: endpoints: expected a list of endpoints ('- name: ...')")
    endpoints: list[EndpointConfig] = []
    for i, item in enumerate(items):
        where = f"endpoints[{i}]"
        problems = _kept_fields(item, where)
        if not problems:
            try:
                endpoints.append(EndpointConfig.model_validate(item))
            except ValidationError as exc:
                problems = _problems(exc, where)
        if problems:
            raise ConfigError(f"{path}: " + "; ".join(f"{f}: {why}" for f, why in problems.items()))
    return endpoints
