"""Keep-alive traffic against real processes: the operator, the emulated API server, a real
Prometheus scraping the fleet, and real HTTP messaging-server stubs on loopback.

One operator run serves several pools at once, each a scenario with its own relay stub; the
test functions then check what each stub received and what status and events say. The run
crashes the operator twice on purpose (SIGKILL): once between planning and sending, once
while a send is in flight. Idle lines are idle because the fleet exports
``imessage_line_last_activity_timestamp_seconds`` weeks in the past.
"""

import base64
import datetime as dt
import itertools
import json
import pathlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from linepool.sandbox.fleet import Fleet, RelayStub
from linepool.sandbox.prometheus import PrometheusProcess
from tests.integration.conftest import Sandbox, open_sandbox, wait_for

pytestmark = pytest.mark.integration

TOKEN = "tok-3c1f9d2e-never-log-me"  # a test token; the tests check it never leaks
DAY = 86400.0

# Every line id is unique to this module: the fleet and Prometheus are shared by the session.
QUIET = {"ka-q0": ["+14155557000", "+14155557001"], "ka-q1": ["+14155557010", "+14155557011"]}
FLAKY = {"ka-f0": ["+14155557100"]}
BROKEN = {"ka-b0": ["+14155557200"]}
RESTART = {"ka-r0": ["+14155557300"]}
INFLIGHT = {"ka-i0": ["+14155557400"]}
LOCKED = {"ka-l0": ["+14155557500"], "ka-l1": ["+14155557510"]}
DISABLED = {"ka-d0": ["+14155557600", "+14155557601"]}


@dataclass
class Run:
    box: Sandbox
    stubs: dict[str, RelayStub]
    metrics: str = ""
    log: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def messages(self, server: str) -> list[dict[str, Any]]:
        """Message requests the server's stub accepted (2xx)."""
        return self.stubs[server].messages

    def requests(self, server: str) -> list[Any]:
        return [r for r in self.stubs[server].requests if r.path == "/v1/messages"]

    def line(self, server: str, line: str) -> dict[str, Any]:
        lines = self.box.status("messagingservers", server).get("lines") or []
        return next((item for item in lines if item["id"] == line), {})


def _zone_and_window(*, start_in_minutes: int, minutes: int) -> tuple[str, dict[str, Any]]:
    """A fixed-offset zone whose local time is far from midnight, and a window from now in it."""
    now = dt.datetime.now(tz=dt.UTC)
    offset = next(o for o in range(0, 13) if 3 <= (now.hour + o) % 24 <= 19)
    zone = f"Etc/GMT-{offset}" if offset else "UTC"  # Etc/GMT-3 is UTC+3
    local = now + dt.timedelta(hours=offset)
    start = local.replace(second=0, microsecond=0) + dt.timedelta(minutes=start_in_minutes)
    end = start + dt.timedelta(minutes=minutes)
    window = {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"),
              "days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]}
    return zone, window


def _secret(box: Sandbox, name: str, token: str) -> None:
    box.api.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": box.namespace},
                   "type": "Opaque", "data": {"token": base64.b64encode(token.encode()).decode()}})


def _pool(box: Sandbox, name: str, **keep_alive: Any) -> None:
    """A pool with keep-alive as given; its window is opened by ``_open_windows`` just before the operator starts."""
    box.pool(name, scaling={"mode": "Off"}, keepAlive={"minSpacing": "1m", **keep_alive})


def _open_windows(box: Sandbox, *, now: list[str], later: list[str]) -> None:
    """Windows open now (for two minutes), or opening at the next minute (for one)."""
    # Plans in the `later` window must land well after the operator's first pass: start early in a minute.
    if dt.datetime.now(tz=dt.UTC).second > 35:
        time.sleep(61 - dt.datetime.now(tz=dt.UTC).second)
    for names, (start_in, minutes) in ((now, (0, 2)), (later, (1, 1))):
        zone, window = _zone_and_window(start_in_minutes=start_in, minutes=minutes)
        for name in names:
            box.api.patch("linepools", box.namespace, name,
                          {"spec": {"quotas": {"timezone": zone}, "keepAlive": {"window": window}}})


def _servers(box: Sandbox, pool: str, servers: dict[str, list[str]], stubs: dict[str, RelayStub], *,
             idle_days: dict[str, float], secret: str = "relay-token") -> None:
    now = time.time()
    for name, lines in servers.items():
        stubs[name] = RelayStub(token=TOKEN).start()
        box.fleet.add_server(name, lines)
        for line in lines:
            if line in idle_days:
                box.fleet.set_last_activity(name, line, now - idle_days[line] * DAY)
        box.server(name, pool, lines, endpoint=stubs[name].url,
                   credentialsSecretRef={"name": secret, "key": "token"})


@pytest.fixture(scope="module")
def run(fleet: Fleet, prometheus: PrometheusProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir: pathlib.Path = tmp_path_factory.mktemp("keepalive")
    stubs: dict[str, RelayStub] = {}
    with open_sandbox(fleet=fleet, prometheus=prometheus, workdir=workdir) as box:
        try:
            yield _scenario(box, stubs)
        finally:
            for stub in stubs.values():
                stub.stop()


def _scenario(box: Sandbox, stubs: dict[str, RelayStub]) -> Run:
    _secret(box, "relay-token", TOKEN)

    # 1. One idle line among active ones: exactly one exchange, answered by an idle partner line.
    _pool(box, "quiet")
    _servers(box, "quiet", QUIET, stubs, idle_days={"+14155557000": 30, "+14155557011": 5})
    # 2. 429, then 500, then fine: deferred, retried, sent once.
    _pool(box, "flaky", partners=["friend@example.com"])
    _servers(box, "flaky", FLAKY, stubs, idle_days={"+14155557100": 30})
    stubs["ka-f0"].fail_next(1, status=429, retry_after=1)
    stubs["ka-f0"].fail_next(1, status=503)
    # 3. Always 500: three attempts with backoff, then it gives up for the day.
    _pool(box, "broken", partners=["friend@example.com"])
    _servers(box, "broken", BROKEN, stubs, idle_days={"+14155557200": 30})
    stubs["ka-b0"].fail_next(100, status=500)
    # 4. Planned for the next minute; the operator is killed right after planning.
    _pool(box, "restart", partners=["+14155550888"])
    _servers(box, "restart", RESTART, stubs, idle_days={"+14155557300": 30})
    # 5. The send hangs for 6s; the operator is killed while it is in flight.
    _pool(box, "inflight", partners=["+14155550777"])
    _servers(box, "inflight", INFLIGHT, stubs, idle_days={"+14155557400": 30})
    stubs["ka-i0"].delay_next(1, seconds=6)
    # 6. One server's Secret is missing; the other server of the pool goes on.
    _pool(box, "locked", partners=["friend@example.com"])
    _servers(box, "locked", {"ka-l0": LOCKED["ka-l0"]}, stubs, idle_days={"+14155557500": 30},
             secret="missing-token")
    _servers(box, "locked", {"ka-l1": LOCKED["ka-l1"]}, stubs, idle_days={"+14155557510": 30})
    # 7. Keep-alive off: nothing is sent, but a line past the deadline is still reported.
    _pool(box, "disabled", enabled=False)
    _servers(box, "disabled", DISABLED, stubs, idle_days={"+14155557600": 50, "+14155557601": 25})

    for servers in (QUIET, FLAKY, BROKEN, RESTART, INFLIGHT, LOCKED, DISABLED):
        for name, lines in servers.items():
            box.export(name, lines)
    _open_windows(box, now=["quiet", "flaky", "broken", "inflight", "locked", "disabled"], later=["restart"])
    flags = ["--keep-alive-retry-base", "1s", "--keep-alive-max-attempts", "3", "--keep-alive-answer-delay", "2s"]
    box.start_operator(extra_args=flags)
    result = Run(box=box, stubs=stubs)

    # Crash 1: the restart pool's exchange is in status, due in the next minute, not yet sent.
    planned = wait_for(lambda: (result.line("ka-r0", "+14155557300").get("keepAlive") or {}).get("plannedTime"),
                       timeout=30, what="the restart pool's plan in status")
    result.notes["planned_before_crash"] = planned
    # kopf posts events from a queue in the background: a SIGKILL loses what is still queued. Let
    # the first pass's LineAtRisk out first; the disabled pool's test checks that it was posted.
    wait_for(lambda: box.events("LineAtRisk", involving="ka-d0"), timeout=30, what="the first pass's LineAtRisk event")
    box.operators[-1].kill()
    result.notes["requests_at_crash_1"] = len(result.requests("ka-r0"))
    box.start_operator(extra_args=flags)

    # Crash 2: while the in-flight pool's request is held by its server.
    wait_for(lambda: any(r.status is None for r in result.requests("ka-i0")), timeout=150,
             what="the in-flight pool's request to arrive")
    box.operators[-1].kill()
    box.start_operator(extra_args=flags)

    # The Secret of ka-l0 appears only after its absence has been reported.
    wait_for(lambda: box.condition("messagingservers", "ka-l0", "CredentialsAvailable").get("status") == "False",
             timeout=60, what="CredentialsAvailable=False on ka-l0")
    result.notes["locked_condition"] = box.condition("messagingservers", "ka-l0", "CredentialsAvailable")
    result.notes["locked_requests_before_fix"] = len(result.requests("ka-l0"))

    def settled() -> bool:
        return (result.line("ka-q0", "+14155557000").get("keepAlive", {}).get("phase") == "Replied"
                and result.line("ka-f0", "+14155557100").get("keepAlive", {}).get("phase") == "Sent"
                and result.line("ka-b0", "+14155557200").get("keepAlive", {}).get("phase") == "Failed"
                and result.line("ka-r0", "+14155557300").get("keepAlive", {}).get("phase") == "Sent"
                and result.line("ka-i0", "+14155557400").get("keepAlive", {}).get("phase") == "Sent"
                and result.line("ka-l1", "+14155557510").get("keepAlive", {}).get("phase") == "Sent")

    wait_for(settled, timeout=200, interval=1.0, what="every scenario to settle")
    _secret(box, "missing-token", TOKEN)
    wait_for(lambda: box.condition("messagingservers", "ka-l0", "CredentialsAvailable").get("status") == "True",
             timeout=40, what="CredentialsAvailable=True once the Secret exists")
    time.sleep(3)  # a few more passes: nothing else may go out
    result.metrics = box.operators[-1].metrics()
    result.log = box.operator_logs()
    return result


def test_an_idle_line_gets_exactly_one_exchange_and_active_lines_none(run: Run) -> None:
    sent = run.messages("ka-q0") + run.messages("ka-q1")
    assert len(sent) == 2, sent
    first, answer = sorted(sent, key=lambda m: len(m["idempotencyKey"]))
    assert first["from"] == "+14155557000" and first["idempotencyKey"].startswith("+14155557000/")
    # The partner is the other idle line (5 days quiet), which answers the first message.
    assert first["to"] == "+14155557011"
    assert answer == {**answer, "from": "+14155557011", "to": "+14155557000",
                      "idempotencyKey": first["idempotencyKey"] + "/reply"}
    assert "http" not in first["text"] and first["text"] != answer["text"]
    record = run.line("ka-q0", "+14155557000")
    assert record["keepAlive"]["phase"] == "Replied" and record["lastKeepAliveTime"]
    assert run.line("ka-q1", "+14155557011")["lastKeepAliveTime"]
    assert "lastKeepAliveTime" not in run.line("ka-q0", "+14155557001")
    assert run.box.events("KeepAliveSent", involving="ka-q0") and run.box.events("KeepAliveReplied", involving="ka-q1")
    summary = run.box.status("linepools", "quiet")["keepAlive"]
    assert summary["sentToday"] == 1 and summary["due"] == 0 and summary["atRisk"] == 0
    assert run.box.condition("linepools", "quiet", "KeepAliveHealthy")["status"] == "True"


def test_every_request_carries_the_contract(run: Run) -> None:
    request = next(r for r in run.requests("ka-q0") if r.status == 202)
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert set(request.body) == {"from", "to", "text", "idempotencyKey"}


def test_429_defers_and_5xx_retries_then_it_is_sent_once(run: Run) -> None:
    statuses = [r.status for r in run.requests("ka-f0")]
    assert statuses == [429, 503, 202]
    keys = {r.body["idempotencyKey"] for r in run.requests("ka-f0")}
    assert len(keys) == 1
    assert run.box.events("KeepAliveDeferred", involving="ka-f0")
    assert run.box.events("KeepAliveRetrying", involving="ka-f0")
    assert run.box.events("KeepAliveSent", involving="ka-f0")
    assert 'linepool_keepalive_sends_total{namespace="' in run.metrics
    assert 'outcome="deferred"' in run.metrics and 'outcome="retrying"' in run.metrics


def test_a_server_that_keeps_failing_is_given_up_on_for_the_day(run: Run) -> None:
    requests = run.requests("ka-b0")
    assert [r.status for r in requests] == [500, 500, 500]
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(requests)]
    assert gaps[1] > gaps[0] >= 0.9  # capped exponential backoff: 1s, then 2s
    assert run.line("ka-b0", "+14155557200")["keepAlive"]["attempts"] == 3
    (event,) = run.box.events("KeepAliveFailed", involving="ka-b0")
    assert "gave up after 3 attempt(s)" in event["message"]
    healthy = run.box.condition("linepools", "broken", "KeepAliveHealthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "KeepAliveFailed")


def test_a_restart_between_planning_and_sending_neither_loses_nor_doubles_the_send(run: Run) -> None:
    assert run.notes["requests_at_crash_1"] == 0
    (message,) = run.messages("ka-r0")
    assert [r.status for r in run.requests("ka-r0")] == [202]
    record = run.line("ka-r0", "+14155557300")["keepAlive"]
    assert record["plannedTime"] == run.notes["planned_before_crash"]  # the restarted operator kept the plan
    assert message["idempotencyKey"] == record["key"]


def test_a_crash_during_a_send_is_resolved_by_the_idempotency_key(run: Run) -> None:
    requests = run.requests("ka-i0")
    assert len({r.body["idempotencyKey"] for r in requests}) == 1
    # The held request was committed by the server; the restarted operator's retry got 409.
    assert [r.status for r in requests] == [202, 409]
    assert len(run.messages("ka-i0")) == 1
    assert run.line("ka-i0", "+14155557400")["keepAlive"]["phase"] == "Sent"


def test_a_missing_secret_stops_sends_from_that_server_only(run: Run) -> None:
    cond = run.notes["locked_condition"]
    assert cond["reason"] == "SecretNotFound" and "missing-token" in cond["message"]
    assert run.notes["locked_requests_before_fix"] == 0
    assert run.box.events("SecretNotFound", involving="ka-l0")
    assert len(run.messages("ka-l1")) == 1  # the other server of the pool was not held up


def test_the_token_never_leaves_the_secret(run: Run) -> None:
    assert TOKEN not in run.log
    events = json.dumps(run.box.api.list("events", run.box.namespace))
    statuses = json.dumps([s.get("status") for s in run.box.api.list("messagingservers", run.box.namespace)])
    pools = json.dumps([p.get("status") for p in run.box.api.list("linepools", run.box.namespace)])
    assert TOKEN not in events and TOKEN not in statuses and TOKEN not in pools


def test_disabled_keep_alive_sends_nothing_but_still_reports_lines_at_risk(run: Run) -> None:
    assert run.requests("ka-d0") == []
    line = run.line("ka-d0", "+14155557600")
    assert line["state"] == "AtRisk" and "keepAlive" not in line
    assert run.line("ka-d0", "+14155557601")["state"] != "AtRisk"
    assert run.box.events("LineAtRisk", involving="ka-d0")
    healthy = run.box.condition("linepools", "disabled", "KeepAliveHealthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "LinesAtRisk")
    assert run.box.status("linepools", "disabled")["keepAlive"]["atRisk"] == 1
    assert any(line.startswith("linepool_pool_lines{") and 'pool="disabled"' in line and 'state="AtRisk"' in line
               and line.endswith(" 1.0") for line in run.metrics.splitlines())
