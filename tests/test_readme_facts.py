"""Facts the README repeats are checked against their one definition in the code."""

from __future__ import annotations

import re
from pathlib import Path

from stsd import variables
from stsd.daemon.environment import DAEMON_VARIABLES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n## ", start + 1)
    following = README.find("\n### ", start + 1)
    return README[start : min(i for i in (end, following, len(README)) if i > 0)]


def test_readme_lists_exactly_the_variables_the_daemon_reads() -> None:
    section = _section("### What the daemon reads from its environment")
    listed = re.findall(r"^\| `([A-Za-z0-9_]+)` \| (.+) \|$", section, re.MULTILINE)
    assert listed == list(DAEMON_VARIABLES)


def test_readme_names_every_variable_a_client_started_daemon_does_not_inherit() -> None:
    section = _section("### What the daemon reads from its environment")
    for name in variables.NOT_INHERITED_BY_DAEMON:
        assert f"`{name}`" in section, name
    for prefix in variables.NOT_INHERITED_PREFIXES:
        assert f"`{prefix}*`" in section, prefix


def test_readme_quotes_the_sign_in_line_the_daemon_sends() -> None:
    from stsd.daemon.sso import SsoSettings, sign_in_line

    line = sign_in_line("dev", SsoSettings("dev", None, "corp").sign_in_command)

    assert f"stsd: {line}" in _section("## SSO (IAM Identity Center)")
    assert f"`stsd: {line}`" in _section("## Troubleshooting")
