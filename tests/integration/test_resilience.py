"""Failing static when Prometheus goes away, and bad input reported without crashing."""

import pathlib
from collections.abc import Iterator

import pytest

from linepool.sandbox.fleet import Fleet
from linepool.sandbox.prometheus import PrometheusProcess
from tests.integration.conftest import Sandbox, holds, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def own_prometheus(fleet: Fleet, tmp_path: pathlib.Path) -> Iterator[PrometheusProcess]:
    """A Prometheus this test may stop and start (the shared one must stay up)."""
    with PrometheusProcess([fleet.target], workdir=tmp_path / "prometheus") as running:
        yield running


def test_prometheus_outage_holds_decisions_and_recovers(sandbox: Sandbox, own_prometheus: PrometheusProcess) -> None:
    sandbox.prometheus = own_prometheus
    sandbox.pool("out", scaling={"mode": "Auto", "minServers": 1, "maxServers": 4, "cooldown": "1h",
                                 "linesPerServer": 1},
                 inventory=["+14155554000", "+14155554001"])
    sandbox.server("out-0", "out", ["+14155554100"])
    sandbox.server("out-1", "out", ["+14155554101"])
    sandbox.send("out-0", 4500)   # out-0 saturated; the pool at 45% needs no new server
    sandbox.start_operator()
    wait_for(lambda: sandbox.label("out-0") == "false" and sandbox.label("out-1") == "true", what="decisions")
    wait_for(lambda: sandbox.condition("linepools", "out", "MetricsAvailable").get("status") == "True",
             what="metrics available")

    own_prometheus.stop()
    condition = wait_for(lambda: sandbox.condition("linepools", "out", "MetricsAvailable").get("status") == "False"
                         and sandbox.condition("linepools", "out", "MetricsAvailable"), what="MetricsAvailable=False")
    assert condition["reason"] == "MetricsUnavailable"
    assert "cannot reach" in condition["message"]
    wait_for(lambda: sandbox.events("MetricsUnavailable", involving="out"), what="a MetricsUnavailable event")
    assert sandbox.condition("messagingservers", "out-0", "MetricsAvailable")["status"] == "False"
    # Fail static: the last decisions stay, traffic or not, and nothing is added.
    sandbox.send("out-1", 4900)
    assert holds(lambda: sandbox.label("out-0") == "false" and sandbox.label("out-1") == "true"
                 and len(sandbox.servers_of("out")) == 2, seconds=4)
    assert sandbox.status("linepools", "out").get("lastMetricsTime")

    own_prometheus.start()
    wait_for(lambda: sandbox.condition("linepools", "out", "MetricsAvailable").get("status") == "True",
             timeout=30, what="recovery")
    wait_for(lambda: sandbox.events("MetricsRestored", involving="out"), what="a MetricsRestored event")


def test_invalid_specs_are_reported_and_only_that_object_is_skipped(sandbox: Sandbox) -> None:
    sandbox.pool("mars", quotas={"timezone": "Mars/Olympus"})
    sandbox.pool("good", scaling={"mode": "Off"})
    sandbox.server("good-0", "good", ["+14155555000", "+14155555001"])
    sandbox.server("good-1", "good", ["+14155555001", "+14155555002"], exported=False)  # shares a line
    sandbox.server("lost-0", "nowhere", ["+14155555100"], exported=False)
    sandbox.start_operator()

    invalid = wait_for(lambda: sandbox.condition("linepools", "mars", "InvalidSpec").get("status") == "True"
                       and sandbox.condition("linepools", "mars", "InvalidSpec"), what="InvalidSpec on the pool")
    assert "spec.quotas.timezone" in invalid["message"] and "Mars/Olympus" in invalid["message"]
    event = wait_for(lambda: sandbox.events("InvalidSpec", involving="mars"), what="an InvalidSpec event")[0]
    assert event["type"] == "Warning" and "spec.quotas.timezone" in event["message"]
    assert sandbox.condition("linepools", "mars", "Ready")["status"] == "False"

    conflict = wait_for(lambda: sandbox.condition("messagingservers", "good-1", "InvalidSpec").get("status") == "True"
                        and sandbox.condition("messagingservers", "good-1", "InvalidSpec"), what="LineConflict")
    assert conflict["reason"] == "LineConflict" and "already on server good-0" in conflict["message"]
    assert sandbox.label("good-1") == "false"

    orphan = wait_for(lambda: sandbox.condition("messagingservers", "lost-0", "InvalidSpec").get("status") == "True"
                      and sandbox.condition("messagingservers", "lost-0", "InvalidSpec"), what="PoolNotFound")
    assert orphan["reason"] == "PoolNotFound" and "spec.pool" in orphan["message"]
    wait_for(lambda: sandbox.events("InvalidSpec", involving="lost-0"), what="an event on the orphan")

    # The valid pool is reconciled all the same.
    wait_for(lambda: sandbox.condition("linepools", "good", "Ready").get("status") == "True", what="good pool Ready")
    assert sandbox.label("good-0") == "true"

    # Fixing the spec clears the condition.
    sandbox.api.patch("linepools", sandbox.namespace, "mars", {"spec": {"quotas": {"timezone": "Europe/Paris"}}})
    wait_for(lambda: sandbox.condition("linepools", "mars", "InvalidSpec").get("status") == "False",
             what="InvalidSpec cleared")


def test_deleting_a_pool_leaves_the_users_servers_reported_not_deleted(sandbox: Sandbox) -> None:
    sandbox.pool("gone", scaling={"mode": "Off"})
    sandbox.server("gone-0", "gone", ["+14155556000"])
    sandbox.start_operator()
    wait_for(lambda: sandbox.label("gone-0") == "true", what="the server decided")
    sandbox.api.delete("linepools", sandbox.namespace, "gone")
    wait_for(lambda: sandbox.api.get("linepools", sandbox.namespace, "gone") is None, what="the pool to go")
    orphan = wait_for(lambda: sandbox.condition("messagingservers", "gone-0", "InvalidSpec").get("status") == "True"
                      and sandbox.condition("messagingservers", "gone-0", "InvalidSpec"), what="PoolNotFound")
    assert orphan["reason"] == "PoolNotFound"
    wait_for(lambda: sandbox.label("gone-0") == "false", what="the label to follow")
    assert sandbox.status("messagingservers", "gone-0")["assignable"] is False
    assert sandbox.api.get("messagingservers", sandbox.namespace, "gone-0") is not None
