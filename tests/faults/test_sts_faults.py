"""STS down, slow, throttling or talking garbage: the daemon keeps serving the credentials it holds, retries
with growing, jittered backoff (counted on the wire), recovers by itself, and never serves expired ones."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from conftest import Daemon, World, ask_daemon
from faultproxy import FaultProxy

from stsd.protocol import Refusal

from .conftest import FAULT_CONFIG, Harness, running_manager

STEP_S = 10  # how often (fake seconds) shells ask during an outage
OUTAGE_S = 600
USABLE_MARGIN_S = 60  # stsd.daemon.sessions.USABLE_MARGIN: never handed out with less left


def faults(default: set[str]) -> list:
    """Every fault; those not in `default` are marked slow (the default run samples the kinds)."""
    cases = [
        ("down", {}, "down"),
        ("slow", {}, "slow"),
        ("throttle", {"throttle_kind": "400"}, "throttle-400"),
        ("throttle", {"throttle_kind": "429"}, "throttle-429"),
        ("throttle", {"throttle_kind": "503"}, "throttle-503"),
        ("garbage", {}, "garbage"),
    ]
    return [
        pytest.param(
            mode,
            options,
            id=name,
            marks=[] if name in default else [pytest.mark.slow],
        )
        for mode, options, name in cases
    ]


async def _outage(h: Harness, held_key: str) -> list[int]:
    """Ask every STEP_S through the outage; every answer must be the held, still-valid credentials.
    Returns the fake times (s into the outage) at which AssumeRole was attempted."""
    attempts: list[int] = []
    seen = h.attempts()
    for elapsed in range(0, OUTAGE_S, STEP_S):
        if elapsed:
            await h.advance(STEP_S)
        session = await h.credentials()
        assert session.credentials is not None
        assert session.credentials.access_key_id == held_key
        assert h.seconds_left(session) >= USABLE_MARGIN_S
        count = h.attempts()
        attempts += [elapsed] * (count - seen)
        seen = count
    return attempts


@pytest.mark.parametrize(("mode", "options"), faults({"down", "throttle-400", "garbage"}))
def test_sts_outage_serves_held_credentials_backs_off_with_jitter_and_recovers(
    aws_env: World, proxy: FaultProxy, mode: str, options: dict[str, Any]
) -> None:
    async def scenario() -> None:
        async with running_manager() as h:
            first = await h.credentials()
            assert first.credentials is not None and first.renew_at is not None
            held = first.credentials.access_key_id
            proxy.set_mode(mode, actions={"AssumeRole"}, **options)
            await h.advance((first.renew_at - h.clock.wall()).total_seconds())

            attempts = await _outage(h, held)

            # Retries happen, never closer than the backoff floor, spread by jitter and growing.
            assert len(attempts) >= 3, attempts
            gaps = [b - a for a, b in zip(attempts, attempts[1:])]
            assert min(gaps) >= FAULT_CONFIG.backoff_initial_seconds, gaps
            assert len(set(gaps)) > 1, f"no jitter: {gaps}"
            assert max(gaps) > 2 * FAULT_CONFIG.backoff_initial_seconds, f"no growth: {gaps}"
            assert h.session().last_error, "status must show the failing renewal"
            if mode != "down":  # a refused connection never reaches the proxy
                assert proxy.count("AssumeRole") == h.attempts()

            # STS comes back: the renewal loop alone (nobody asking) fetches new credentials.
            proxy.set_mode("pass")
            for _ in range(int(FAULT_CONFIG.backoff_max_seconds // STEP_S) + 2):
                await h.advance(STEP_S)
                if h.session().last_error is None:
                    break
            session = h.session()
            assert session.last_error is None
            assert session.credentials is not None and session.credentials.access_key_id != held
            assert h.seconds_left(session) > FAULT_CONFIG.min_remaining_seconds

    asyncio.run(scenario())


@pytest.mark.parametrize(("mode", "options"), faults({"throttle-400"}))
def test_outage_past_expiry_never_serves_expired_credentials(
    aws_env: World, proxy: FaultProxy, mode: str, options: dict[str, Any]
) -> None:
    async def scenario() -> None:
        async with running_manager() as h:
            first = await h.credentials()
            assert first.expires_at is not None
            proxy.set_mode(mode, actions={"AssumeRole"}, **options)
            refused = 0
            # Walk past expiry by ten minutes in 60 s steps, asking each time.
            steps = int((first.expires_at - h.clock.wall()).total_seconds() // 60) + 10
            for _ in range(steps):
                await h.advance(60)
                try:
                    session = await h.credentials()
                except Refusal as error:
                    assert error.code in ("sts_unavailable", "timeout"), error.code
                    refused += 1
                    continue
                assert session.expires_at is not None and session.expires_at > h.clock.wall()
                assert h.seconds_left(session) >= USABLE_MARGIN_S
            assert refused >= 10, "after expiry every request must be refused"

    asyncio.run(scenario())


def test_many_shells_asking_during_an_outage_cause_no_retry_storm(aws_env: World, proxy: FaultProxy) -> None:
    async def scenario() -> None:
        async with running_manager() as h:
            first = await h.credentials()
            assert first.renew_at is not None and first.credentials is not None
            proxy.set_mode("throttle", actions={"AssumeRole"}, throttle_kind="400")
            proxy.reset_counts()
            await h.advance((first.renew_at - h.clock.wall()).total_seconds())
            for _ in range(5):
                sessions = await asyncio.gather(*(h.credentials() for _ in range(100)))
                assert {s.credentials.access_key_id for s in sessions if s.credentials} == {
                    first.credentials.access_key_id
                }
                await h.advance(1)
            # 500 asks within 5 s of a failure: the one failed renewal, nothing more (backoff >= 10 s).
            assert proxy.count("AssumeRole") == 1

    asyncio.run(scenario())


# -- the real daemon process -------------------------------------------------------------------------------
@pytest.mark.parametrize(("mode", "options"), faults({"down", "slow", "throttle-503", "garbage"}))
def test_daemon_answers_a_failed_forced_renewal_with_a_clear_error_and_keeps_serving(
    proxied_daemon: Daemon, world: World, proxy: FaultProxy, mode: str, options: dict[str, Any]
) -> None:
    [first] = ask_daemon(world.socket, {"op": "credentials", "profile": "alice-sts"})
    assert first["ok"], first
    held = first["credentials"]["AccessKeyId"]

    proxy.set_mode(mode, actions={"AssumeRole"}, **options)
    [renewal, after, status] = ask_daemon(
        world.socket,
        {"op": "renew", "profile": "alice-sts"},
        {"op": "credentials", "profile": "alice-sts"},
        {"op": "status"},
    )
    assert renewal["ok"] is False
    assert renewal["error"]["code"] in ("sts_unavailable", "timeout"), renewal
    assert "\n" not in renewal["error"]["message"]
    assert after["ok"] and after["credentials"]["AccessKeyId"] == held
    [session] = status["sessions"]
    assert session["last_error"]

    proxy.set_mode("pass")
    # One forced renewal per session per interval: the failed one counts, so asking again is refused...
    [again] = ask_daemon(world.socket, {"op": "renew", "profile": "alice-sts"})
    assert again["ok"] is False and again["error"]["code"] == "renew_limited", again
    assert "possible again in" in again["error"]["message"] and "\n" not in again["error"]["message"]
    # ...and the daemon's own retry (backoff of 1-4 s in this config) recovers the session instead.
    deadline = time.monotonic() + 30  # bounds a broken run only
    while True:
        [current] = ask_daemon(world.socket, {"op": "credentials", "profile": "alice-sts"})
        if current["ok"] and current["credentials"]["AccessKeyId"] != held:
            break
        assert time.monotonic() < deadline, "the daemon did not retry the failed renewal"
        time.sleep(0.2)
    assert proxied_daemon.process.poll() is None
