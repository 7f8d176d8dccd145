"""``vespid loadtest``'s refusals: each stops before any request, with one line saying why."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from vespid.cli.main import cli
from vespid.servers.process import free_port


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["loadtest", "-k", "key", "--no-progress", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-e", "x", "--plot", "out.png"], "write the plot as .html"),
        (["-e", "x", "--sessions", "--rps", "2"], "--sessions opens sessions; it takes no --rps"),
        (["-e", "x", "-n", "0"], "Invalid value for '-n'"),
        (["-e", "x", "--rps", "0"], "Invalid value for '-rps' / '--rps'"),
        (["-e", "x", "--api", "grpc"], "'grpc' is not one of 'openai', 'tgi', 'generic'"),
    ],
)
def test_usage_mistakes_exit_2(args: list[str], message: str) -> None:
    code, out, err = invoke(*args)
    assert (code, out) == (2, "")
    assert message in err


def test_a_bad_payload_file_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ok": 1}\n{oops\n')
    code, out, err = invoke("-e", "x", "--payload", str(bad))
    assert (code, out) == (2, "")
    assert f"vespid loadtest: --payload: {bad} line 2 is not JSON" in err


def test_an_unreachable_control_plane_is_one_json_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, out, err = invoke("-e", "x", "-n", "1", "--url", url)
    assert (code, out) == (1, "")
    [line] = err.splitlines()
    error = orjson.loads(line)
    assert error["code"] == "control_plane_error"
    assert "check that the control plane is up" in error["error"]
