"""Wall clock jumps and suspend/resume, with an injected clock against the real local STS: a machine that
slept past a renewal renews on wake before serving; a clock stepped backwards never makes expired
credentials look valid. FakeClock.jump moves only the wall clock, as a suspend does (monotonic stands still)."""

from __future__ import annotations

import asyncio

from conftest import World
from faultproxy import FaultProxy

from stsd.daemon.sessions import MAX_SLEEP_STEP_SECONDS

from .conftest import FAULT_CONFIG, running_manager


def test_machine_that_slept_past_expiry_renews_on_wake_before_serving(
    aws_env: World, proxy: FaultProxy
) -> None:
    async def scenario() -> None:
        async with running_manager() as h:
            before = await h.credentials()
            assert before.credentials is not None
            h.clock.jump(3 * 3600)  # lid closed for three hours: the session expired meanwhile
            after = await h.credentials()  # the first request on wake
            assert after.credentials is not None
            assert after.credentials.access_key_id != before.credentials.access_key_id
            assert h.seconds_left(after) > FAULT_CONFIG.min_remaining_seconds
            assert proxy.count("AssumeRole") == 2

    asyncio.run(scenario())


def test_machine_that_slept_past_renewal_renews_by_itself_soon_after_waking(
    aws_env: World, proxy: FaultProxy
) -> None:
    async def scenario() -> None:
        async with running_manager() as h:
            before = await h.credentials()
            assert before.renew_at is not None and before.credentials is not None
            # Asleep from just before the renewal time until 5 minutes after it; nobody asks on wake.
            await h.advance((before.renew_at - h.clock.wall()).total_seconds() - 60)
            h.clock.jump(360)
            assert proxy.count("AssumeRole") == 1
            await h.advance(MAX_SLEEP_STEP_SECONDS)  # the renewal loop re-reads the wall clock this often
            session = h.session()
            assert session.credentials is not None
            assert session.credentials.access_key_id != before.credentials.access_key_id
            assert proxy.count("AssumeRole") == 2

    asyncio.run(scenario())


def test_a_clock_jumping_forward_and_back_causes_no_renewal_storm(aws_env: World, proxy: FaultProxy) -> None:
    async def scenario() -> None:
        async with running_manager() as h:
            left_when_handed_out = [h.seconds_left(await h.credentials())]
            for _ in range(20):  # a flapping clock: +1 h, then back
                h.clock.jump(3600)
                left_when_handed_out.append(h.seconds_left(await h.credentials()))
                h.clock.jump(-3600)
                left_when_handed_out.append(h.seconds_left(await h.credentials()))
                await h.advance(1)
            # A forward jump can make the held session look expired, so renewing is right then; but
            # never more than once per jump, and never handing out what looks expired at that moment.
            assert 2 <= proxy.count("AssumeRole") <= 21
            assert min(left_when_handed_out) > 0

    asyncio.run(scenario())


def test_a_wall_clock_stepped_back_never_makes_expired_credentials_look_valid(
    aws_env: World, proxy: FaultProxy
) -> None:
    async def scenario() -> None:
        async with running_manager() as h:
            before = await h.credentials()
            assert before.credentials is not None
            h.clock.jump(-1800)  # the clock was 30 min fast; NTP steps it back
            await h.advance(3600 + 60)  # an hour of real running: the STS session is over
            session = await h.credentials()
            assert session.credentials is not None
            assert session.credentials.access_key_id != before.credentials.access_key_id

    asyncio.run(scenario())
