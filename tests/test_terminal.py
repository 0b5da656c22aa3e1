"""What clients print and apply from the daemon's words: control characters never reach the terminal,
`stsd allow` advice pastes back into the user's own shell as the same path, and a reply naming a variable
stsd never sets is refused whole."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from stsd import terminal
from stsd.protocol import Refusal

ODD_DIRECTORY = "/tmp/it's a \\ path $HOME `x`"


def test_control_characters_are_escaped_on_one_line() -> None:
    assert terminal.printable("a\x1b]0;title\x07b\nc") == "a\\x1b]0;title\\x07b\\x0ac"
    assert terminal.printable("/home/alice/proj") == "/home/alice/proj"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_allow_advice_pastes_back_as_the_same_directory_in_each_shell(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    advice = terminal.allow_command(ODD_DIRECTORY + "/.stsd.toml", shell)
    assert advice.startswith("stsd allow ")
    # The shell reads the advised word back; printf shows what `stsd allow` would have received.
    word = advice.removeprefix("stsd allow ")
    no_rc = {"bash": "--norc", "zsh": "-f", "fish": "--no-config"}[shell]
    result = subprocess.run(
        [shell, no_rc, "-c", f"printf %s {word}"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.stdout == ODD_DIRECTORY


def test_fish_and_posix_quoting_differ_for_a_backslash() -> None:
    # POSIX single quotes keep a backslash as is; fish's treat `\\` as one backslash.
    assert terminal.allow_command("/a\\\\b/.stsd.toml", "bash") != terminal.allow_command(
        "/a\\\\b/.stsd.toml", "fish"
    )


def test_plain_directories_are_left_unquoted() -> None:
    assert (
        terminal.allow_command("/home/alice/my-proj/.stsd.toml", "fish") == "stsd allow /home/alice/my-proj"
    )


@pytest.mark.parametrize("name", ["PROMPT_COMMAND", "LD_PRELOAD", "PATH", "aws_lower", "AWS_", "AWS_X;rm"])
def test_a_reply_naming_a_variable_stsd_never_sets_is_refused_whole(name: str) -> None:
    with pytest.raises(Refusal, match="nothing applied"):
        terminal.checked_variables({"AWS_ACCESS_KEY_ID": "ASIAX", name: "x"})


def test_a_reply_of_managed_variables_passes() -> None:
    values = {"AWS_ACCESS_KEY_ID": "ASIAX", "AWS_PROFILE": None, "STSD_PROFILE": "p"}
    assert terminal.checked_variables(values) == values


def test_user_shell_falls_back_to_posix_quoting() -> None:
    assert terminal.user_shell({"SHELL": "/usr/bin/fish"}) == "fish"
    assert terminal.user_shell({"SHELL": "/bin/tcsh"}) == "bash"
    assert terminal.user_shell({}) == "bash"
