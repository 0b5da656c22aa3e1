"""protocol.Refusal, the one error type from daemon to client: what the daemon raises is what its reply
carries and what the client rebuilds, fields included; every code is spelled in stsd/protocol.py only;
and the module stays free for the hook to import."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
from conftest import Daemon, World, stsd_tokens

from stsd import protocol, wire

# Strings equal to a code that mean something else: trust states and trust directories (stsd.project.trust
# and the status/hook code that reads them) and wire.WireError's kinds.
NOT_CODES = {
    ("project/trust.py", "untrusted"),
    ("project/trust.py", "denied"),
    ("client/commands.py", "untrusted"),
    ("client/commands.py", "denied"),
    ("client/transition.py", "denied"),
    ("wire.py", "untrusted"),
}


def test_a_refusal_survives_the_wire_with_its_code_message_and_fields() -> None:
    raised = protocol.Refusal(protocol.RENEW_LIMITED, "too soon", forced_renewal_at="2027-01-15T08:30:00Z")

    rebuilt = protocol.Refusal.of(protocol.decode(protocol.encode(raised.reply())))

    assert (rebuilt.code, rebuilt.message, rebuilt.fields) == (
        "renew_limited",
        "too soon",
        {"forced_renewal_at": "2027-01-15T08:30:00Z"},
    )
    assert str(rebuilt) == "too soon"


@pytest.mark.parametrize(
    "reply",
    [{"v": 1, "ok": False}, {"v": 1, "ok": False, "error": "x"}, {"v": 1, "ok": False, "error": {"code": 7}}],
)
def test_an_error_reply_without_a_code_is_a_bad_reply(reply: dict) -> None:
    assert protocol.Refusal.of(reply).code == protocol.BAD_REPLY


def test_fields_named_like_the_constructors_parameters_are_kept() -> None:
    reply = {"v": 1, "ok": False, "error": {"code": "x", "message": "m", "self": 1, "code_": 2}}

    assert protocol.Refusal.of(reply).fields == {"self": 1, "code_": 2}


def test_a_malformed_line_is_refused_with_a_code() -> None:
    with pytest.raises(protocol.Refusal) as raised:
        protocol.decode(b"[1, 2]")
    assert raised.value.reply()["error"] == {
        "code": "bad_request",
        "message": "a message must be a JSON object",
    }


def test_the_daemons_refusal_is_the_clients_refusal(world: World, daemon: Daemon) -> None:
    directory = world.project("proj", 'profile = "alice-sts"\n')
    project_file = str(directory / ".stsd.toml")

    reply = wire.request({"op": "env", "dir": str(directory)}, 10, str(world.socket)).message
    refusal = protocol.Refusal.of(reply)

    assert refusal.code == protocol.UNTRUSTED
    assert refusal.fields == {"project": project_file}
    assert project_file in refusal.message and "stsd allow" in refusal.message


def test_no_module_but_protocol_spells_a_code() -> None:
    codes = {value for name, value in vars(protocol).items() if name.isupper() and isinstance(value, str)}
    copies = []
    for where, token in stsd_tokens("protocol.py"):
        if token.type != tokenize.STRING:
            continue
        try:
            value = ast.literal_eval(token.string)
        except (ValueError, SyntaxError):
            continue  # an f-string
        if value in codes and (where, value) not in NOT_CODES:
            copies.append(f"{where}:{token.start[0]}: {token.string}")
    assert not copies, "use the constant of stsd.protocol instead: " + "; ".join(copies)


def test_importing_protocol_costs_no_module_but_itself() -> None:
    # The hook imports stsd.protocol on every prompt: json and typing would cost it milliseconds.
    probe = (
        "import sys; before = set(sys.modules); import stsd.protocol; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True, cwd="/"
    ).stdout.split()

    assert set(loaded) <= {"stsd", "stsd.protocol", "__future__"}, loaded


def test_the_protocol_document_lists_every_reply_code_and_no_other() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    table = text[text.index("| code | meaning |") : text.index("## The credentials endpoint")]
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert listed == protocol.REPLY_CODES | {protocol.BAD_REPLY}
