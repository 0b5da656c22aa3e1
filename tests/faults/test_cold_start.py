"""A cold start of many roles at once, on the wire: every role is assumed once, the source's identity
is looked up once (single-flight), however many clients ask and however slow STS is."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from conftest import Daemon, World, ask_daemon
from faultproxy import FaultProxy

from stsd.daemon.sts_calls import STS_THREADS, ClientFor, StsClients, in_sts_pool
from stsd.demo.local_aws import role_profile

from .conftest import running_manager

ROLES = 20
CLIENTS = 100


def _role_profiles(world: World) -> list[str]:
    names = [f"cold-{i:02d}" for i in range(ROLES)]
    with (world.home / ".aws" / "config").open("a") as config:
        config.writelines("\n" + role_profile(name, session_name=name) for name in names)
    return names


def test_many_roles_at_once_cost_one_assume_role_each_and_one_identity_lookup(
    world: World, proxy: FaultProxy
) -> None:
    profiles = _role_profiles(world)
    proxy.set_mode("slow", slow_seconds=0.2)  # lookups overlap, as against real STS
    daemon = Daemon(world, extra_env={"AWS_ENDPOINT_URL": proxy.endpoint})
    try:
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            replies = list(
                pool.map(
                    lambda i: ask_daemon(world.socket, {"op": "credentials", "profile": profiles[i % ROLES]}),
                    range(CLIENTS),
                )
            )
        assert all(reply["ok"] for [reply] in replies)
        # The identity lookup runs in the background after the fetches: status waits for nothing, so
        # ask until the source shows its identity.
        for _ in range(200):
            [status] = ask_daemon(world.socket, {"op": "status"})
            if any(source["identity_arn"] for source in status["sources"]):
                break
            threading.Event().wait(0.05)
        assert proxy.count("AssumeRole") == ROLES
        assert proxy.count("GetCallerIdentity") == 1
    finally:
        daemon.stop()


def test_one_client_per_source_credentials_region_and_profile() -> None:
    built: list[ClientFor] = []
    settings = ["files as they were"]

    def build(order: ClientFor) -> object:
        built.append(order)
        return object()

    clients = StsClients(build, settings=lambda: settings[0])
    first = clients.client("AKIA1", "secret", None, "us-east-1", "alice")
    assert clients.client("AKIA1", "secret", None, "us-east-1", "alice") is first
    assert clients.client("AKIA1", "secret", None, "eu-west-1", "alice") is not first
    assert clients.client("AKIA1", "other", "token", "us-east-1", "alice") is not first
    assert clients.client("AKIA1", "secret", None, "us-east-1", "bob") is not first
    assert len(built) == 4
    assert [order.profile for order in built] == ["alice", "alice", "alice", "bob"]
    assert "secret" not in repr(built[0])
    settings[0] = "an endpoint_url edited"  # the AWS files or the daemon's variables changed
    again = clients.client("AKIA1", "secret", None, "us-east-1", "alice")
    assert again is not first and built[-1].settings == "an endpoint_url edited"
    assert clients.client("AKIA1", "secret", None, "us-east-1", "alice") is again


def test_sts_calls_run_on_their_own_pool() -> None:
    async def thread_names() -> list[str]:
        return [await in_sts_pool(lambda: threading.current_thread().name) for _ in range(3)]

    names = asyncio.run(thread_names())
    assert all(name.startswith("sts") for name in names)
    assert STS_THREADS >= 32  # sized for network waits, not for CPUs


def test_session_count_is_counted_without_a_snapshot_of_each(aws_env: World, proxy: FaultProxy) -> None:
    async def scenario() -> tuple[int, int, int]:
        async with running_manager() as harness:
            before = harness.manager.session_count()
            await harness.credentials()
            return before, harness.manager.session_count(), len(harness.manager.sessions())

    assert asyncio.run(scenario()) == (0, 1, 1)
