"""Fuzzing the socket protocol of a real daemon (hypothesis): arbitrary bytes, arbitrary JSON, and requests
that are almost right. Every line gets exactly one well-formed reply, never an internal error, and the
daemon keeps serving. The default run tries a few hundred inputs; `-m slow` a few thousand."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemon, World, ask_daemon, raw_exchange
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stsd import protocol

KNOWN_CODES = protocol.REPLY_CODES - {protocol.INTERNAL}  # `internal` is a bug by definition
# Function-scoped fixtures (one daemon) are shared by every example on purpose: it must survive them all.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
FUZZ_LONG = settings(FUZZ, max_examples=3000)
PING = b'{"v": 1, "op": "ping"}'


def assert_well_formed(reply: Any, sent: Any = None) -> None:
    assert isinstance(reply, dict), reply
    assert reply.get("v") == 1 and isinstance(reply.get("ok"), bool), reply
    if reply["ok"]:
        return
    error = reply["error"]
    assert error["code"] in KNOWN_CODES, (sent, reply)  # `internal` is a bug by definition
    assert isinstance(error["message"], str) and error["message"].strip(), reply
    assert "\n" not in error["message"], reply


def exchange(daemon: Daemon, path: Path, lines: list[bytes]) -> list[Any]:
    """Send raw lines and then a ping on one connection; the replies to the lines. The ping must be
    answered too, by the same daemon: no line ends the connection or the daemon."""
    replies = raw_exchange(path, b"".join(line + b"\n" for line in [*lines, PING]), len(lines) + 1, 30)
    assert len(replies) == len(lines) + 1, replies
    pong = replies.pop()
    assert pong["ok"] is True and pong["pid"] == daemon.process.pid, pong
    return replies


# -- strategies --------------------------------------------------------------------------------------------
raw_lines = st.binary(max_size=2048).map(lambda b: b.replace(b"\n", b" "))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
paths = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        ["/", "/tmp", "/proc/self", "/dev/null", "relative/dir", "", ".", "..", "/" + "a" * 5000]
    ),
    st.text(alphabet=string.ascii_letters + "/._-\x00\u202e", max_size=100).map(lambda t: "/" + t),
)
almost_right = st.fixed_dictionaries(
    {"v": st.one_of(st.just(1), json_values), "op": st.one_of(st.sampled_from(protocol.OPS), json_values)},
    optional={
        "dir": st.one_of(paths, json_values),
        "profile": st.one_of(st.sampled_from(["alice-sts", "alice", "", "default", "x" * 200]), json_values),
        "id": json_values,
    },
)


def _lines_of(requests: list[Any]) -> list[bytes]:
    return [json.dumps(request, ensure_ascii=False).encode("utf-8", "surrogatepass") for request in requests]


def _still_serving(world: World, daemon: Daemon) -> None:
    [pong] = ask_daemon(world.socket, {"op": "ping"})
    assert pong["ok"] and pong["pid"] == daemon.process.pid
    assert "Traceback" not in daemon.log, daemon.log[-3000:]


def _fuzz_raw(world: World, daemon: Daemon, lines: list[bytes]) -> None:
    replies = exchange(daemon, world.socket, lines)
    for line, reply in zip(lines, replies):
        assert_well_formed(reply, line)


def _fuzz_json(world: World, daemon: Daemon, requests: list[Any]) -> None:
    replies = exchange(daemon, world.socket, _lines_of(requests))
    for request, reply in zip(requests, replies):
        assert_well_formed(reply, request)
        echoed = (
            isinstance(request, dict)
            and isinstance(request.get("id"), (str, int))
            and not isinstance(request.get("id"), bool)
        )
        if echoed and len(str(request["id"])) <= 128:
            assert reply.get("id") == request["id"], (request, reply)


def test_arbitrary_bytes_get_well_formed_errors(world: World, daemon: Daemon) -> None:
    @FUZZ
    @given(st.lists(raw_lines, min_size=1, max_size=5))
    def run(lines: list[bytes]) -> None:
        _fuzz_raw(world, daemon, lines)

    run()
    _still_serving(world, daemon)


def test_arbitrary_json_and_almost_right_requests_get_well_formed_replies(
    world: World, daemon: Daemon
) -> None:
    @FUZZ
    @given(st.lists(st.one_of(json_values, almost_right), min_size=1, max_size=5))
    def run(requests: list[Any]) -> None:
        _fuzz_json(world, daemon, requests)

    run()
    _still_serving(world, daemon)


@pytest.mark.slow
def test_long_fuzz_of_the_protocol(world: World, daemon: Daemon) -> None:
    @FUZZ_LONG
    @given(
        st.lists(
            st.one_of(raw_lines, st.one_of(json_values, almost_right).map(lambda r: _lines_of([r])[0])),
            min_size=1,
            max_size=8,
        )
    )
    def run(lines: list[bytes]) -> None:
        _fuzz_raw(world, daemon, lines)

    run()
    _still_serving(world, daemon)
