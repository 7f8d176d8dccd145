"""The docs stay true to the code: every worker setting is documented."""

from __future__ import annotations

from pathlib import Path

from vespid.worker.settings import WorkerSettings, env_name

ROOT = Path(__file__).resolve().parent.parent


def test_every_worker_setting_is_in_the_docs() -> None:
    text = (ROOT / "docs" / "worker.md").read_text()
    for name in WorkerSettings.model_fields:
        env = env_name(name) if name != "public_port" else "VAST_TCP_PORT_<WORKER_PORT>"
        assert f"`{env}`" in text, env
        assert f"`--{name.replace('_', '-')}`" in text, name


def test_every_control_setting_is_in_the_docs() -> None:
    from vespid.control.settings import ControlSettings
    from vespid.settings import env_name as model_env

    text = (ROOT / "docs" / "control.md").read_text()
    for name in ControlSettings.model_fields:
        assert f"`{model_env(ControlSettings, name)}`" in text, name


def test_every_loadtest_option_is_in_the_docs() -> None:
    from vespid.cli.loadtest import loadtest

    text = (ROOT / "docs" / "loadtest.md").read_text()
    for param in loadtest.params:
        for opt in param.opts:
            assert f"`{opt}`" in text, opt
