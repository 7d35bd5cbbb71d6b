"""The CLI checks every test file shares: run `attnsim` through click's runner, and assert the
one-line refusal (exit code 2, nothing on stdout, exactly one line 'error: ...' on stderr)."""
import os
import shutil

import pytest
from click.testing import CliRunner

from attnsim.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _stderr(result):
    try:
        return result.stderr
    except ValueError:  # older click without separate stderr capture
        return result.output


def assert_one_line_error(result, *needles):
    """Exit code 2, nothing on stdout, exactly one line 'error: ...' on stderr containing the needles;
    returns that line."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = _stderr(result)
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def installed_tool(names, what: str, package: str) -> str:
    """The first of `names` on PATH (a real engine the tests drive: a browser, a spreadsheet), or skip; under
    CI, which installs `package` when it is missing (.ci/run), fail instead."""
    exe = next((p for p in map(shutil.which, names) if p), None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is not on PATH under CI (.ci/run installs {package})")
        pytest.skip(f"{what} is not on PATH (apt-get install {package})")
    return exe
