"""Assignment gating against real processes: saturation, the label flip, hysteresis, writes."""

import time

import pytest

from tests.integration.conftest import Sandbox, holds, wait_for

pytestmark = pytest.mark.integration

LINES = {"sat-0": ["+14155551000", "+14155551001"], "sat-1": ["+14155551010", "+14155551011"]}


def test_saturation_flips_the_label_and_hysteresis_holds_it(sandbox: Sandbox) -> None:
    sandbox.pool("sat", scaling={"mode": "Off"})
    for name, lines in LINES.items():
        sandbox.server(name, "sat", lines)
    sandbox.start_operator()

    wait_for(lambda: sandbox.label("sat-0") == "true" and sandbox.label("sat-1") == "true",
             what="both servers assignable")
    pool = wait_for(lambda: sandbox.status("linepools", "sat").get("assignableLines"), what="assignable lines")
    assert sorted(pool) == sorted(LINES["sat-0"] + LINES["sat-1"])

    # 4,000 of 5,000 is 80%: past stopAt (75%).
    sandbox.send("sat-0", 4000)
    wait_for(lambda: sandbox.label("sat-0") == "false", what="sat-0 to stop taking users")
    status = sandbox.status("messagingservers", "sat-0")
    assert status["phase"] == "Saturated" and status["assignable"] is False
    assert status["utilization"] >= 0.75
    assert sandbox.condition("messagingservers", "sat-0", "Assignable")["reason"] == "ServerSaturated"
    wait_for(lambda: sandbox.events("ServerSaturated", involving="sat-0"), what="a ServerSaturated event")
    wait_for(lambda: sorted(sandbox.status("linepools", "sat")["assignableLines"]) == sorted(LINES["sat-1"]),
             what="assignable lines without sat-0")
    assert sandbox.label("sat-1") == "true"

    # A bigger quota brings it to ~73%: under stopAt but above resumeAt (65%), so it stays out.
    sandbox.api.patch("messagingservers", sandbox.namespace, "sat-0", {"spec": {"dailyMessageQuota": 5500}})
    wait_for(lambda: sandbox.status("messagingservers", "sat-0").get("quota") == 5500, what="new quota observed")
    assert holds(lambda: sandbox.label("sat-0") == "false", seconds=3), "hysteresis did not hold"

    # ~50%: below resumeAt, it takes users again.
    sandbox.api.patch("messagingservers", sandbox.namespace, "sat-0", {"spec": {"dailyMessageQuota": 8000}})
    wait_for(lambda: sandbox.label("sat-0") == "true", what="sat-0 to resume")
    assert sandbox.status("messagingservers", "sat-0")["phase"] == "Active"
    wait_for(lambda: sandbox.events("AssignmentResumed", involving="sat-0"), what="an AssignmentResumed event")


def test_a_steady_cycle_writes_nothing(sandbox: Sandbox) -> None:
    sandbox.pool("calm", scaling={"mode": "Auto", "minServers": 1, "maxServers": 3})
    sandbox.server("calm-0", "calm", ["+14155551100", "+14155551101"])
    # 1.5%: mid-way between whole percents (status rounds down). increase() on a series seconds
    # old extrapolates by up to a scrape interval over the series' age: a few percent of the
    # figure, more when a loaded machine delays scrapes. At 10.5% that once crossed 11% under
    # load; at 1.5% (1.7% with the traffic below) even a 30% reading error stays under 2%.
    sandbox.send("calm-0", 75)
    traffic_started = time.monotonic()
    operator = sandbox.start_operator()
    wait_for(lambda: sandbox.status("messagingservers", "calm-0").get("messagesInWindow", 0) >= 70,
             what="traffic observed")
    wait_for(lambda: sandbox.condition("linepools", "calm", "Ready").get("status") == "True", what="pool Ready")

    def cycles() -> float:
        for line in operator.metrics().splitlines():
            if line.startswith("linepool_reconcile_duration_seconds_count") and 'pool="calm"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    # Let the first decisions land and the young series settle, then count every API write.
    time.sleep(max(0.0, traffic_started + 25 - time.monotonic()))
    sandbox.api.reset_counters()
    start = cycles()
    sandbox.send("calm-0", 10)  # traffic keeps flowing, below the status resolution
    wait_for(lambda: cycles() >= start + 5, what="five polls")
    assert sandbox.operator_writes() == 0, [(e["verb"], e["objectRef"], e["requestReceivedTimestamp"])
                                           for e in sandbox.api.audit_events()]


def test_operator_metrics_are_exported(sandbox: Sandbox) -> None:
    sandbox.pool("obs", scaling={"mode": "Off"})
    sandbox.server("obs-0", "obs", ["+14155551200"])
    sandbox.send("obs-0", 1000)
    operator = sandbox.start_operator()
    series = f'linepool_server_utilization{{namespace="{sandbox.namespace}",pool="obs",server="obs-0"}} 0.2'
    wait_for(lambda: series in operator.metrics(), what="server utilization metric")
    page = operator.metrics()
    for name in ("linepool_pool_utilization", "linepool_pool_assignable_lines", "linepool_pool_servers",
                 "linepool_reconcile_duration_seconds_bucket", "linepool_prometheus_queries_total",
                 "linepool_pool_condition", "linepool_build_info"):
        assert name in page, name
