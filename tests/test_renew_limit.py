"""Forced renewals (the protocol's `renew`): at most one per session per interval reaches STS, however
often anything running as the user asks, and none gets past a permanent failure. The session manager runs
against the real local STS with a FakeClock (the interval is a minute; a test does not wait for it); the
daemon tests drive a real `stsd serve`."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from conftest import Daemon, World, ask_daemon
from harness import harness
from test_sessions import role_request

from stsd.daemon.clock import utc_text
from stsd.daemon.sessions import FORCED_RENEWAL_INTERVAL
from stsd.protocol import RENEW_LIMITED, Refusal

INTERVAL_S = int(FORCED_RENEWAL_INTERVAL.total_seconds())


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_second_forced_renewal_within_the_interval_is_refused_saying_when(world_env: Any) -> None:
    async def scenario() -> None:
        async with harness() as h:
            await h.manager.credentials(role_request())
            renewed = await h.manager.renew(role_request())
            assert h.manager.assume_role_calls == 2
            with pytest.raises(Refusal) as raised:
                await h.manager.renew(role_request())
            assert raised.value.code == "renew_limited"
            possible_at = utc_text(h.clock.wall() + FORCED_RENEWAL_INTERVAL)
            assert raised.value.fields == {"forced_renewal_at": possible_at}
            assert f"possible again in {INTERVAL_S} s" in raised.value.message
            assert "\n" not in raised.value.message

            h.clock.advance(INTERVAL_S - 1)
            with pytest.raises(Refusal) as raised:
                await h.manager.renew(role_request())
            assert raised.value.code == RENEW_LIMITED
            assert "possible again in 1 s" in raised.value.message
            assert h.manager.assume_role_calls == 2  # refusals cost no STS call

            h.clock.advance(1)
            again = await h.manager.renew(role_request())
            assert h.manager.assume_role_calls == 3
            assert again.credentials != renewed.credentials

    run(scenario())


def test_a_flood_of_forced_renewals_costs_one_assume_role(world_env: Any) -> None:
    async def scenario() -> None:
        async with harness() as h:
            await h.manager.credentials(role_request())
            outcomes = await asyncio.gather(
                *(h.manager.renew(role_request()) for _ in range(100)), return_exceptions=True
            )
            refused = [o for o in outcomes if isinstance(o, Refusal) and o.code == RENEW_LIMITED]
            assert len(refused) == 99, [o for o in outcomes if isinstance(o, BaseException)][:3]
            assert h.manager.assume_role_calls == 2

    run(scenario())


def test_a_suspend_does_not_prolong_the_wait_nor_a_clock_set_back_shorten_it(world_env: Any) -> None:
    async def scenario() -> None:
        async with harness() as h:
            await h.manager.renew(role_request())
            h.clock.jump(INTERVAL_S)  # suspended: the wall clock moved, the monotonic one did not
            await h.manager.renew(role_request())
            assert h.manager.assume_role_calls == 2

            h.clock.jump(-3600)  # the wall clock set back an hour
            with pytest.raises(Refusal) as raised:
                await h.manager.renew(role_request())
            assert raised.value.code == RENEW_LIMITED
            h.clock.advance(INTERVAL_S)
            await h.manager.renew(role_request())
            assert h.manager.assume_role_calls == 3

    run(scenario())


def test_sessions_say_when_a_forced_renewal_is_possible(world_env: Any) -> None:
    async def scenario() -> None:
        async with harness() as h:
            await h.manager.credentials(role_request())
            [session] = h.manager.sessions()
            assert session.forced_renewal_at == h.clock.wall() and not session.blocked
            await h.manager.renew(role_request())
            h.clock.advance(20)
            [session] = h.manager.sessions()
            assert session.forced_renewal_at == h.clock.wall() + FORCED_RENEWAL_INTERVAL - timedelta(
                seconds=20
            )

    run(scenario())


def test_renewals_never_get_past_a_permanent_failure(world_env: Any) -> None:
    async def scenario() -> None:
        async with harness() as h:
            request = role_request(external_id="not-alice")
            with pytest.raises(Refusal):
                await h.manager.credentials(request)
            for _ in range(5):
                h.clock.advance(INTERVAL_S)
                with pytest.raises(Refusal) as raised:
                    await h.manager.renew(request)
                assert raised.value.code == "sts_denied"
            assert h.manager.assume_role_calls == 1
            [session] = h.manager.sessions()
            assert session.blocked and session.forced_renewal_at is None

    run(scenario())


# -- the real daemon ---------------------------------------------------------------------------------------


def test_daemon_refuses_repeated_forced_renewals_and_status_says_when(daemon: Daemon, world: World) -> None:
    project = world.project("app", 'profile = "alice-sts"\n')
    assert world.stsd("allow", str(project)).returncode == 0
    replies = ask_daemon(world.socket, *[{"op": "renew", "profile": "alice-sts"} for _ in range(10)])
    assert replies[0]["ok"], replies[0]
    for reply in replies[1:]:
        assert reply["ok"] is False and reply["error"]["code"] == "renew_limited", reply
        message = reply["error"]["message"]
        assert "\n" not in message
        assert re.search(r"a forced renewal is possible again in \d+ s \(at \S+Z\)", message), message
        assert reply["error"]["forced_renewal_at"].endswith("Z")

    [status] = ask_daemon(world.socket, {"op": "status"})
    [session] = status["sessions"]
    assert 0 < session["forced_renewal_in_s"] <= INTERVAL_S
    assert session["forced_renewal_at"] == replies[-1]["error"]["forced_renewal_at"]
    assert session["blocked"] is False

    text = world.stsd("status", cwd=str(project))
    assert text.returncode == 0, text.stderr
    [line] = [line for line in text.stdout.splitlines() if "force renew" in line]
    assert re.fullmatch(r"    force renew possible in (1m00s|\d+s) \(\S+Z\)", line), line
    as_json = json.loads(world.stsd("status", "--json", cwd=str(project)).stdout)
    assert "forced_renewal_in_s" in as_json["sessions"][0]

    # Nine refusals, logged once per interval: one line, and a count when the daemon stops.
    assert daemon.stop() == 0
    logged = daemon.log.count("refused a forced renewal:")
    summed = [int(n) for n in re.findall(r"refused forced renewals: (\d+) more", daemon.log)]
    assert logged >= 1 and len(summed) <= logged
    assert logged + sum(summed) == 9


def test_status_says_a_blocked_session_cannot_be_forced(daemon: Daemon, world: World) -> None:
    project = world.project("wrong-id", 'role_arn = "arn:aws:iam::123456789012:role/alice-sts"\n'
                            'source_profile = "alice"\nexternal_id = "not-alice"\n')  # fmt: skip
    assert world.stsd("allow", str(project)).returncode == 0
    [denied, renew] = ask_daemon(
        world.socket, {"op": "env", "dir": str(project)}, {"op": "renew", "dir": str(project)}
    )
    assert denied["error"]["code"] == "sts_denied"
    assert renew["error"]["code"] == "sts_denied", renew
    assert "not retried until the AWS config or credentials files change" in renew["error"]["message"]
    [status] = ask_daemon(world.socket, {"op": "status"})
    [session] = status["sessions"]
    assert session["blocked"] is True and session["forced_renewal_in_s"] is None
    text = world.stsd("status", cwd=str(project)).stdout
    assert "    force renew not until the AWS config or credentials files change" in text.splitlines()


def test_stsd_renew_command_renews_once_and_then_says_when(daemon: Daemon, world: World) -> None:
    project = world.project("p", 'profile = "alice-sts"\n')
    assert world.stsd("allow", str(project)).returncode == 0
    before = json.loads(world.stsd("env", "--json", str(project)).stdout)["AWS_ACCESS_KEY_ID"]
    renewed = world.stsd("renew", "--dir", str(project))
    assert renewed.returncode == 0, renewed.stderr
    assert re.search(
        r"renewed .*; the new credentials expire \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", renewed.stdout
    )
    assert json.loads(world.stsd("env", "--json", str(project)).stdout)["AWS_ACCESS_KEY_ID"] != before
    again = world.stsd("renew", "--dir", str(project))
    assert again.returncode == 1 and "a forced renewal is possible again in" in again.stderr
    # The profile names the same role request: one session, one limit, whichever way it is asked.
    by_profile = world.stsd("renew", "--profile", "alice-sts")
    assert by_profile.returncode == 1 and "a forced renewal is possible again in" in by_profile.stderr
