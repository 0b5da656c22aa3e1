"""The bash hook is shellcheck-clean, as a user's linter would see it once evaluated."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from stsd.shells import hook_text


def test_bash_hook_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; CI installs it in .ci/run)")
    # The printed hook (pinned paths included), not only the file: that is what users evaluate.
    result = subprocess.run(
        ["shellcheck", "--shell=bash", "--severity=style", "-"],
        input=hook_text("bash"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
