"""Task presets: ``model_presets.yaml``, which names each model and how to run it.

::

    models:
      test-loading:
        inference:
          docker_image: "loading-worker:latest"   # run with Docker when an engine is there
          command: ["python", "/app/worker.py"]   # the container's command, or the process
          env_vars:
            MODEL_NAME: "test-loading"

Besides the seed's three fields, ``inference`` may set ``session`` (keep the program
running between tasks), ``timeout_s`` (per task), ``session_idle_s`` and
``model_path`` (a host directory; mounted read-only at ``/models`` under Docker).
A process's command runs in the presets file's directory. The file is checked
as a whole at start-up: a mistake is a ConfigError whose one line names the file,
the model and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from vespid.errors import ConfigError

__all__ = [
    "RESERVED_ENV",
    "InferencePreset",
    "Presets",
    "TaskPreset",
    "load_presets",
    "parse_presets",
]

# Set by vespid for every task; a preset may not set them.
RESERVED_ENV: Final = frozenset({"GPU_DEVICE", "CUDA_VISIBLE_DEVICES", "TASK_ID", "TASK_METADATA"})

_MODEL_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class InferencePreset(BaseModel):
    """How to run one model's inference tasks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    docker_image: str | None = Field(None, min_length=1)
    command: tuple[str, ...] | None = None
    env_vars: dict[str, str] = Field(default_factory=dict)
    session: bool = False
    timeout_s: float | None = Field(None, gt=0)
    session_idle_s: float = Field(300.0, gt=0)
    model_path: str | None = Field(None, min_length=1)

    @field_validator("command", mode="before")
    @classmethod
    def _check_command(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, list) or not value:
            raise ValueError('must be a non-empty list of strings, e.g. ["python", "worker.py"]')
        if not all(isinstance(part, str) and part for part in value):
            raise ValueError("every item must be a non-empty string")
        return tuple(value)

    @field_validator("env_vars", mode="before")
    @classmethod
    def _check_env(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("must be a mapping of NAME: value")
        env: dict[str, str] = {}
        for name, item in value.items():
            if not isinstance(name, str) or not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid variable name")
            if name in RESERVED_ENV:
                raise ValueError(f"{name} is set by vespid for each task; remove it")
            if isinstance(item, bool):
                env[name] = "true" if item else "false"
            elif isinstance(item, str | int | float):
                env[name] = str(item)
            else:
                raise ValueError(f"{name}: value must be a string or a number")
        return env

    @model_validator(mode="after")
    def _check_runnable(self) -> InferencePreset:
        if self.docker_image is None and self.command is None:
            raise ValueError("needs docker_image or command (or both)")
        return self


@dataclass(frozen=True, slots=True)
class TaskPreset:
    """One model: its name, how to run it, and the directory its command runs in."""

    name: str
    inference: InferencePreset
    directory: Path

    @property
    def model_path(self) -> Path | None:
        path = self.inference.model_path
        return None if path is None else self.directory / path


@dataclass(frozen=True, slots=True)
class Presets:
    """Every model in one presets file."""

    path: Path
    models: Mapping[str, TaskPreset]

    @property
    def needs_docker(self) -> bool:
        return any(p.inference.docker_image for p in self.models.values())


def load_presets(path: Path) -> Presets:
    """Read and check a presets file; ConfigError naming the file, model and field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_presets(text, path)


def parse_presets(text: str, path: Path) -> Presets:
    """Check presets given as YAML text; ``path`` names them in errors and anchors commands."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ConfigError(f"{path}: needs a top-level 'models:' mapping of model names")
    if extra := sorted(str(key) for key in data if key != "models"):
        raise ConfigError(f"{path}: unknown top-level field {extra[0]!r} (only 'models')")
    if not data["models"]:
        raise ConfigError(f"{path}: 'models' is empty; register at least one model")
    directory = path.resolve().parent
    models: dict[str, TaskPreset] = {}
    for name, entry in data["models"].items():
        models[str(name)] = _parse_model(name, entry, path, directory)
    return Presets(path, models)


def _parse_model(name: object, entry: object, path: Path, directory: Path) -> TaskPreset:
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise ConfigError(
            f"{path}: model {name!r}: the name must be letters, digits, '.', '_' or '-' "
            "(it is part of the URL /tasks/<model>)"
        )
    where = f"{path}: model {name!r}"
    if not isinstance(entry, dict) or "inference" not in entry:
        raise ConfigError(f"{where}: needs an 'inference:' mapping")
    if extra := sorted(str(key) for key in entry if key != "inference"):
        raise ConfigError(f"{where}: {extra[0]}: unknown field (only 'inference')")
    body = entry["inference"]
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: inference: must be a mapping")
    try:
        inference = InferencePreset.model_validate(body)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from None
    return TaskPreset(name, inference, directory)


def _describe(exc: ValidationError) -> str:
    """``inference.timeout_s: Input should be greater than 0 (got -1)``, one per problem."""
    parts = []
    for err in exc.errors():
        message = str(err["msg"]).removeprefix("Value error, ")
        loc = ".".join(str(part) for part in err["loc"])
        field = f"inference.{loc}" if loc else "inference"
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        got = err.get("input")
        shown = isinstance(got, str | int | float) and "(got " not in message
        if err["type"] != "extra_forbidden" and shown:
            message += f" (got {got!r})"
        parts.append(f"{field}: {message}")
    return "; ".join(parts)
