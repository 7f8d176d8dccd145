"""How to run ``vespid`` again from the user's shell, for the commands vespid suggests.

After ``make demo`` the command is ``.venv/bin/vespid``: the virtual environment is not
activated, so a bare ``vespid`` is not on PATH. ``how_to_run()`` derives what to type
from how this process was started (``sys.argv[0]``, else ``sys.executable``), not from
a fixed path.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Invocation", "how_to_run"]


@dataclass(frozen=True, slots=True)
class Invocation:
    """What to type for ``vespid``, and the activation that would make it plain ``vespid``."""

    command: str  # e.g. "vespid", ".venv/bin/vespid", "/opt/py/bin/python -m vespid.cli.main"
    activate: str | None = None  # e.g. "source .venv/bin/activate"; None when not needed


def how_to_run() -> Invocation:
    """The command that runs this vespid from the current directory, as this process ran."""
    script = _script()
    if script is None:
        return Invocation(f"{_shown(Path(sys.executable))} -m vespid.cli.main")
    on_path = shutil.which("vespid")
    if on_path is not None and _same_file(Path(on_path), script):
        return Invocation("vespid")
    activate = script.parent / "activate"
    return Invocation(_shown(script), f"source {_shown(activate)}" if activate.is_file() else None)


def _script() -> Path | None:
    """The ``vespid`` script this process runs, or the one beside its interpreter."""
    started = Path(sys.argv[0])
    if started.name == "vespid" and started.is_file():
        return started
    beside = Path(sys.executable).parent / "vespid"
    return beside if beside.is_file() else None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when inside it (``.venv/bin/vespid``),
    else (or from ``/``) absolute; quoted for a shell. Symbolic links stay as they are
    (a venv's python is one)."""
    absolute, here = path.absolute(), Path.cwd()
    if here == Path(here.anchor) or not absolute.is_relative_to(here):
        return shlex.quote(str(absolute))
    relative = absolute.relative_to(here)
    text = str(relative)
    return shlex.quote(text if os.sep in text else f".{os.sep}{text}")
