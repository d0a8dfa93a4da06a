"""Scale-up against real processes: one server from the template, cooldown, limits, modes, crashes."""

import time
from typing import Any

import pytest

from tests.integration.conftest import Sandbox, holds, wait_for

pytestmark = pytest.mark.integration

INVENTORY = [f"+1415555{n:04d}" for n in range(2000, 2012)]


def two_busy_servers(sandbox: Sandbox, pool: str, **scaling: Any) -> None:
    """A pool whose two servers sit at 80% (past scaleUpAt 75%), with 12 spare lines."""
    sandbox.pool(pool, scaling={"mode": "Auto", "minServers": 1, "maxServers": 5, "linesPerServer": 4,
                                "cooldown": "1h",
                                "serverTemplate": {
                                    "metadata": {"labels": {"team": "support"}, "annotations": {"owner": "ops"}},
                                    "spec": {"endpoint": "http://relay-{ordinal}.messaging.svc:8080",
                                             "credentialsSecretRef": {"name": "relay-token", "key": "token"}}},
                                **scaling},
                 inventory=INVENTORY)
    for index in range(2):
        name = f"{pool}-{index}"
        sandbox.server(name, pool, [f"+1415555{n:04d}" for n in range(3000 + 10 * index, 3002 + 10 * index)])
        sandbox.send(name, 4000)


def test_scale_up_creates_exactly_one_server_from_the_template(sandbox: Sandbox) -> None:
    two_busy_servers(sandbox, "grow")
    sandbox.start_operator()
    created = wait_for(lambda: [s for s in sandbox.servers_of("grow") if s["metadata"]["name"] == "grow-2"],
                       what="a new server")[0]
    assert created["spec"]["lines"] == [{"id": line, "role": "Primary"} for line in INVENTORY[:4]]
    assert created["spec"]["endpoint"] == "http://relay-2.messaging.svc:8080"
    assert created["spec"]["credentialsSecretRef"] == {"name": "relay-token", "key": "token"}
    assert created["metadata"]["labels"]["linepool.dev/pool"] == "grow"
    assert created["metadata"]["labels"]["team"] == "support"
    assert created["metadata"]["annotations"]["owner"] == "ops"
    owner = created["metadata"]["ownerReferences"][0]
    pool_uid = sandbox.get("linepools", "grow")["metadata"]["uid"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("LinePool", "grow", pool_uid)

    wait_for(lambda: sandbox.status("linepools", "grow").get("lastScaleTime"), what="lastScaleTime")
    wait_for(lambda: sandbox.events("ScaledUp", involving="grow"), what="a ScaledUp event")
    wait_for(lambda: sandbox.status("linepools", "grow").get("lines", {}).get("inventory") == 8,
             what="inventory down to 8 spare lines")
    # The new server is empty, so the pool is at 53%: no second server, and certainly no duplicate.
    assert holds(lambda: len(sandbox.servers_of("grow")) == 3, seconds=4)
    assert sandbox.get("linepools", "grow")["spec"]["inventory"] == INVENTORY, "the user's spec was edited"


def test_cooldown_spaces_scale_ups(sandbox: Sandbox) -> None:
    two_busy_servers(sandbox, "cool", cooldown="8s")
    sandbox.start_operator()
    first = wait_for(lambda: [s for s in sandbox.servers_of("cool") if s["metadata"]["name"] == "cool-2"],
                     what="the first new server")[0]
    first_at = time.monotonic()
    # Bring the new server up to 80% too: the pool is past scaleUpAt again at once.
    sandbox.export("cool-2", [line["id"] for line in first["spec"]["lines"]])
    sandbox.send("cool-2", 4000)
    second = wait_for(lambda: [s for s in sandbox.servers_of("cool") if s["metadata"]["name"] == "cool-3"],
                      timeout=40, what="the second new server")[0]
    waited = time.monotonic() - first_at
    assert waited >= 7, f"second scale-up {waited:.1f}s after the first, inside the 8s cooldown"
    assert {line["id"] for line in second["spec"]["lines"]} == set(INVENTORY[4:8])


def test_max_servers_blocks_and_reports_scaling_limited(sandbox: Sandbox) -> None:
    two_busy_servers(sandbox, "full", maxServers=2)
    sandbox.start_operator()
    limited = wait_for(lambda: sandbox.condition("linepools", "full", "ScalingLimited").get("status") == "True"
                       and sandbox.condition("linepools", "full", "ScalingLimited"), what="ScalingLimited")
    assert limited["reason"] == "AtMaxServers"
    wait_for(lambda: sandbox.events("ScaleUpBlocked", involving="full"), what="a ScaleUpBlocked event")
    assert sandbox.status("linepools", "full")["recommendation"]["action"] == "Blocked"
    assert holds(lambda: len(sandbox.servers_of("full")) == 2, seconds=3)


def test_dry_run_recommends_and_changes_nothing(sandbox: Sandbox) -> None:
    two_busy_servers(sandbox, "dry", mode="DryRun")
    sandbox.start_operator()
    recommendation = wait_for(
        lambda: sandbox.status("linepools", "dry").get("recommendation", {}).get("action") == "ScaleUp"
        and sandbox.status("linepools", "dry")["recommendation"], what="a ScaleUp recommendation")
    assert recommendation["serverName"] == "dry-2"
    assert recommendation["lines"] == INVENTORY[:4]
    assert "75%" in recommendation["reason"]
    events = wait_for(lambda: sandbox.events("ScaleUpRecommended", involving="dry"), what="a DryRun event")
    assert "dry-2" in events[0]["message"]
    assert holds(lambda: len(sandbox.servers_of("dry")) == 2, seconds=3)


def test_pause_freezes_every_action(sandbox: Sandbox) -> None:
    two_busy_servers(sandbox, "frozen")
    sandbox.api.patch("linepools", sandbox.namespace, "frozen",
                      {"metadata": {"annotations": {"linepool.dev/paused": "true"}}})
    sandbox.start_operator()
    wait_for(lambda: sandbox.condition("linepools", "frozen", "Ready").get("reason") == "Paused", what="Paused")
    assert holds(lambda: len(sandbox.servers_of("frozen")) == 2, seconds=3)
    sandbox.api.patch("linepools", sandbox.namespace, "frozen",
                      {"metadata": {"annotations": {"linepool.dev/paused": None}}})
    wait_for(lambda: len(sandbox.servers_of("frozen")) == 3, what="scale-up once unpaused")


def test_restart_in_the_middle_of_a_scale_up_creates_no_duplicate(sandbox: Sandbox) -> None:
    two_busy_servers(sandbox, "crash")
    # The operator creates the server, then cannot record it: the real authorizer refuses the
    # pool's status writes (its Role loses that one rule), as a half-applied RBAC change would.
    sandbox.revoke("linepool.dev", "linepools/status")
    first = sandbox.start_operator()
    wait_for(lambda: len(sandbox.servers_of("crash")) == 3, what="the new server")
    time.sleep(1.5)  # a few more polls, still unable to write the pool's status
    first.kill()
    assert "lastScaleTime" not in sandbox.status("linepools", "crash")

    sandbox.grant_operator()
    sandbox.start_operator()
    wait_for(lambda: sandbox.status("linepools", "crash").get("lastScaleTime"), what="status written after restart")
    assert holds(lambda: len(sandbox.servers_of("crash")) == 3, seconds=4), "a duplicate server was created"
    lines = [line["id"] for s in sandbox.servers_of("crash") for line in s["spec"]["lines"]]
    assert len(lines) == len(set(lines)), "a line sits on two servers"
