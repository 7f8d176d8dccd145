"""``python -m vespid.worker``: the launch contract Vast's bootstrap uses."""

from __future__ import annotations

from vespid.cli.worker import run_worker

if __name__ == "__main__":
    run_worker({})
