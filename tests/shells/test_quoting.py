"""Exact quoting: any string round-trips byte for byte through `stsd export` into each real shell.

The value travels as a saved pre-entry value in an inherited `__STSD_STATE` (hex-encoded JSON, so nothing in the
shell ever sees it unquoted); outside any project the hook runs `stsd export`, which restores it with
the shell module's quoting, and the shell's exported environment is read back with `env -0`.
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stsd.client.transition import LoadedState

READ_STATE = {
    "bash": "read -r __STSD_STATE < {path}; export __STSD_STATE",
    "zsh": "read -r __STSD_STATE < {path}; export __STSD_STATE",
    "fish": "read -gx __STSD_STATE < {path}",
}

# Everything an environment variable can hold: any character but NUL (and lone surrogates, not text).
env_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


NASTY = [
    "",
    "-n",
    "it's a \"quoted\" $HOME `id` $(id) ; rm -rf / \\ \\' ''",
    "line one\nline two\n\ttab\n\n",
    "unicode: žluťoučký 🦊 \u200b \x7f \x1b[31m",
    "%s %n {} !! !$ ~root * ?[a] #comment",
]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(env_values, min_size=1, max_size=8))
@example(values=NASTY)
def test_any_value_round_trips_exactly_through_export(open_shell, shell_kind, tmp_path, values):
    shell = _shell(open_shell)
    saved = {f"STSD_PROBE_{index}": value for index, value in enumerate(values)}
    state = LoadedState(
        shell_pid=1, project_file="/nowhere/.stsd.toml", name="probe", expiration="", saved=saved
    )
    state_file = tmp_path / "state"
    state_file.write_text(state.encode())

    output = shell.run(READ_STATE[shell_kind.name].format(path=state_file))
    environment = shell.env()

    assert {name: environment.get(name) for name in saved} == saved
    assert "__STSD_STATE" not in environment
    assert "Traceback" not in output
    shell.run("; ".join(shell_kind.unset_var.format(name=name) for name in saved))


_shells: dict[int, object] = {}


def _shell(open_shell):
    """One shell per test run of a kind, reused across hypothesis examples (each example restores fully)."""
    key = id(open_shell)
    if key not in _shells:
        _shells.clear()
        _shells[key] = open_shell()
    return _shells[key]
