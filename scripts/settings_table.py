"""Rewrite the settings tables in docs/ from the settings models, so they stay true.

Usage: python scripts/settings_table.py
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from vespid.control.settings import ControlSettings
from vespid.settings import env_name
from vespid.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
HEADER = "| variable | flag | default | meaning |"
RENAME = {"public_port": "VAST_TCP_PORT_<WORKER_PORT>"}


def rows(model: type[BaseModel]) -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        env = RENAME.get(name) if model is WorkerSettings and name in RENAME else None
        default = field.get_default(call_default_factory=True)
        shown = "—" if default in (None, "", []) else str(default)
        shown = shown.replace(str(Path.home()), "~")
        shown = {"True": "true", "False": "false"}.get(shown, shown)
        flag = "--" + name.replace("_", "-")
        out.append(
            f"| `{env or env_name(model, name)}` | `{flag}` | {shown} | {field.description} |"
        )
    return out


def rewrite(path: Path, model: type[BaseModel]) -> None:
    text = path.read_text()
    start = text.index(HEADER)
    body_start = text.index("\n", text.index("\n", start) + 1) + 1
    end = text.index("\n\n", body_start)
    path.write_text(text[:body_start] + "\n".join(rows(model)) + text[end:])


if __name__ == "__main__":
    rewrite(ROOT / "docs" / "worker.md", WorkerSettings)
    if (ROOT / "docs" / "control.md").exists():
        rewrite(ROOT / "docs" / "control.md", ControlSettings)
