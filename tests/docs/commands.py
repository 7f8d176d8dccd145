"""The shell commands README.md and docs/*.md show, as written.

A command is a line of a ```` ```sh ````, ``bash``, ``shell`` or ``console`` block, or a
``$ ``-prompted line of any block (continuation lines joined); the other blocks show output.
Tables of commands name them by the words they start with (``starts``, ``entry``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DOCS", "ROOT", "DocCommand", "all_commands", "doc_commands", "entry", "starts"]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")))
SHELL_BLOCKS = ("sh", "bash", "shell", "console")


@dataclass(frozen=True)
class DocCommand:
    doc: str
    text: str  # as written, continuation lines joined

    @property
    def tokens(self) -> list[str]:
        return shlex.split(self.text, comments=True)

    @property
    def line(self) -> str:
        """The command's words, quotes and comment gone: what tables of commands match."""
        return " ".join(self.tokens)

    @property
    def words(self) -> list[str]:
        """The command's words after any ``NAME=value`` assignments; no ``&``."""
        words = self.tokens
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words.pop(0)
        return words[:-1] if words[-1:] == ["&"] else words

    @property
    def kind(self) -> str:
        """The first two words, e.g. ``vespid control``."""
        return " ".join(self.words[:2])

    @property
    def background(self) -> bool:
        return self.tokens[-1] == "&"

    @property
    def sets_variables(self) -> bool:
        """``NAME=value`` alone, or ``export``: what the doc's later commands see."""
        return not self.words or self.words[0] == "export"


def doc_commands(doc: str) -> Iterator[DocCommand]:
    """The shell commands of ``doc`` (a path from the repository root), in order."""
    text = (ROOT / doc).read_text()
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        for line in body.replace("\\\n", " ").splitlines():
            if line.startswith("$ "):
                line = line[2:]
            elif lang not in SHELL_BLOCKS:
                continue
            if line.strip() and not line.lstrip().startswith("#"):
                yield DocCommand(doc, line.strip())


def all_commands() -> list[DocCommand]:
    return [command for doc in DOCS for command in doc_commands(doc)]


def starts(command: DocCommand, words: str) -> bool:
    """Whether ``command``'s words begin with ``words``."""
    return command.line == words or command.line.startswith(words + " ")


def entry(table: Mapping[str, object], command: DocCommand) -> str | None:
    """The key of ``table`` whose words ``command`` starts with, if any (one at most)."""
    keys = [key for key in table if starts(command, key)]
    assert len(keys) <= 1, (command.text, keys)
    return keys[0] if keys else None
