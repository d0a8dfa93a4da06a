"""Keep-alive traffic against real processes: operators under the chart's RBAC on the genuine
kube-apiserver, a real Prometheus scraping the fleet, and real HTTP messaging-server stubs on loopback.

The module owns three sandboxes (namespaces), each with its own operator; they are set up
together and their operators start within seconds of each other. Each pool is a scenario with
its own relay stub; the test functions then check what each stub received and what status,
events and metrics say.

- ``steady``: quiet, flaky, broken, locked and disabled. Its operator runs from start to end.
- ``restart``: its operator is killed (SIGKILL) between planning and sending (crash 1).
- ``inflight``: its operator is killed while the send is in flight (crash 2).

Why the crashes have operators of their own: a send's time inside its window is a hash of the
line and the local date. With one operator for all pools, the date decided whether a pool's
send fell into a downtime, or came so long after a crash that a wait timed out. Now a downtime
can only meet the send that its own scenario is about:

- the steady operator is never down;
- crash 1 comes right after ka-r0's plan is in status and before its window opens at the next
  minute (the test checks that nothing was sent by then), and the restarted operator keeps the
  plan;
- crash 2 interrupts ka-i0's request, the only send its operator has; the restarted operator
  sends it again.

The crashes are not run one after the other in one sandbox: the second would have to wait for
the first pool's send, which adds up to a window (two minutes) to the run.

A window is hard, and a plan may lie in its last second. So each window is widened by two
minutes once its plans are in status (a recorded plan stands for its day): every first send
keeps its planned time, and what follows it (backoff retries, an answer, a pass that comes a
second late, the resend after crash 2) still falls inside the window.

Idle lines are idle because the fleet exports ``imessage_line_last_activity_timestamp_seconds``
weeks in the past.
"""

import base64
import contextlib
import datetime as dt
import functools
import itertools
import json
import pathlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from linepool.sandbox.fleet import Fleet, RelayStub
from linepool.sandbox.kubeapi import KubeApiServer
from linepool.sandbox.prometheus import PrometheusProcess
from tests.integration.conftest import OperatorRbac, Sandbox, open_sandbox, wait_for

# The first test pays for the whole scenario: set-up, up to 25 s waiting for an early second,
# windows of up to two minutes, then up to 15 s until the operator reads again a Secret it found
# missing. That can pass pytest's 180 s, fixtures included, on a date whose hash puts a send at
# the end of its window.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOKEN = "tok-3c1f9d2e-never-log-me"  # a test token; the tests check it never leaks
DAY = 86400.0
FLAGS = ["--keep-alive-retry-base", "1s", "--keep-alive-max-attempts", "3", "--keep-alive-answer-delay", "2s"]
WIDEN_MINUTES = 2

# Every line id is unique to this module: the fleet and Prometheus are shared by the session.
QUIET = {"ka-q0": ["+14155557000", "+14155557001"], "ka-q1": ["+14155557010", "+14155557011"]}
FLAKY = {"ka-f0": ["+14155557100"]}
BROKEN = {"ka-b0": ["+14155557200"]}
RESTART = {"ka-r0": ["+14155557300"]}
INFLIGHT = {"ka-i0": ["+14155557400"]}
LOCKED = {"ka-l0": ["+14155557500"], "ka-l1": ["+14155557510"]}
DISABLED = {"ka-d0": ["+14155557600", "+14155557601"]}
# Which sandbox holds which pool (and the pool's servers).
SANDBOXES: dict[str, dict[str, dict[str, list[str]]]] = {
    "steady": {"quiet": QUIET, "flaky": FLAKY, "broken": BROKEN, "locked": LOCKED, "disabled": DISABLED},
    "restart": {"restart": RESTART},
    "inflight": {"inflight": INFLIGHT},
}


@dataclass
class Run:
    """The sandboxes, by name; a pool or server is looked up in the sandbox that holds it."""

    boxes: dict[str, Sandbox]
    stubs: dict[str, RelayStub]
    metrics: str = ""  # the /metrics pages of the operators running at the end, one per sandbox
    log: str = ""      # the logs of every operator process of every sandbox
    notes: dict[str, Any] = field(default_factory=dict)
    timeline: list[str] = field(default_factory=list)

    def box(self, name: str) -> Sandbox:
        """The sandbox that holds the pool or server ``name``."""
        role = next(role for role, pools in SANDBOXES.items()
                    for pool, servers in pools.items() if name == pool or name in servers)
        return self.boxes[role]

    def messages(self, server: str) -> list[dict[str, Any]]:
        """Message requests the server's stub accepted (2xx)."""
        return self.stubs[server].messages

    def requests(self, server: str) -> list[Any]:
        return [r for r in self.stubs[server].requests if r.path == "/v1/messages"]

    def line(self, server: str, line: str) -> dict[str, Any]:
        lines = self.status("messagingservers", server).get("lines") or []
        return next((item for item in lines if item["id"] == line), {})

    def planned(self, server: str, line: str) -> str | None:
        return self._keep_alive(server, line, "plannedTime")

    def phase(self, server: str, line: str) -> str | None:
        return self._keep_alive(server, line, "phase")

    def _keep_alive(self, server: str, line: str, key: str) -> str | None:
        value = (self.line(server, line).get("keepAlive") or {}).get(key)
        return value if isinstance(value, str) else None

    def status(self, plural: str, name: str) -> dict[str, Any]:
        return self.box(name).status(plural, name)

    def condition(self, plural: str, name: str, type_: str) -> dict[str, Any]:
        return self.box(name).condition(plural, name, type_)

    def events(self, reason: str, *, involving: str) -> list[dict[str, Any]]:
        return self.box(involving).events(reason, involving=involving)

    def mark(self, what: str) -> None:
        """Note a step with its time: the timeline is written next to the operator logs."""
        self.timeline.append(f"{dt.datetime.now(tz=dt.UTC).isoformat(timespec='milliseconds')} {what}")


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
    """A pool with keep-alive as given; its window is opened by ``_open_windows`` just before the operators start."""
    box.pool(name, scaling={"mode": "Off"}, keepAlive={"minSpacing": "1m", **keep_alive})


def _open_windows(run: Run, *, now: list[str], later: list[str]) -> None:
    """Windows open now (for two minutes), or opening at the next minute (for one)."""
    # Plans in the `later` window must land well after the operator's first pass: start early in a minute.
    if dt.datetime.now(tz=dt.UTC).second > 35:
        time.sleep(61 - dt.datetime.now(tz=dt.UTC).second)
    for names, (start_in, minutes) in ((now, (0, 2)), (later, (1, 1))):
        zone, window = _zone_and_window(start_in_minutes=start_in, minutes=minutes)
        for name in names:
            box = run.box(name)
            box.api.patch("linepools", box.namespace, name,
                          {"spec": {"quotas": {"timezone": zone}, "keepAlive": {"window": window}}})


def _widen_window(run: Run, name: str) -> None:
    """Move the end of the pool's window ``WIDEN_MINUTES`` later; call it once the pool's plans are in status.

    Recorded plans stand, so first sends keep their times; what comes after them (retries, an
    answer, a resend after a crash) no longer depends on how close to the end the plan fell.
    Windows start between 03:00 and 19:59 local time, so the new end is on the same day.
    """
    box = run.box(name)
    window = box.get("linepools", name)["spec"]["keepAlive"]["window"]
    end = dt.datetime.strptime(window["end"], "%H:%M") + dt.timedelta(minutes=WIDEN_MINUTES)
    box.api.patch("linepools", box.namespace, name, {"spec": {"keepAlive": {"window": {"end": end.strftime("%H:%M")}}}})
    run.mark(f"window of {name} widened to {window['start']}-{end:%H:%M}")


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
def run(kube: KubeApiServer, operator_rbac: OperatorRbac, fleet: Fleet, prometheus: PrometheusProcess,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir: pathlib.Path = tmp_path_factory.mktemp("keepalive")
    with contextlib.ExitStack() as stack:
        boxes = {role: stack.enter_context(open_sandbox(kube=kube, rbac=operator_rbac, fleet=fleet,
                                                        prometheus=prometheus, workdir=workdir / role))
                 for role in SANDBOXES}
        result = Run(boxes=boxes, stubs={})

        def stop_stubs() -> None:
            for stub in result.stubs.values():
                stub.stop()

        # Runs before the sandboxes stop their operators (an ExitStack unwinds last in, first out).
        stack.callback(stop_stubs)
        try:
            _scenario(result)
        except BaseException:
            print("timeline of the scenario:", *result.timeline, sep="\n")  # shown with the error
            raise
        finally:
            (workdir / "timeline.txt").write_text("\n".join(result.timeline) + "\n")
        yield result


def _scenario(run: Run) -> None:
    steady, restart, inflight, stubs = run.boxes["steady"], run.boxes["restart"], run.boxes["inflight"], run.stubs
    for box in run.boxes.values():
        _secret(box, "relay-token", TOKEN)

    # The steady sandbox.
    # 1. One idle line among active ones: exactly one exchange, answered by an idle partner line.
    _pool(steady, "quiet")
    _servers(steady, "quiet", QUIET, stubs, idle_days={"+14155557000": 30, "+14155557011": 5})
    # 2. 429, then 500, then fine: deferred, retried, sent once.
    _pool(steady, "flaky", partners=["friend@example.com"])
    _servers(steady, "flaky", FLAKY, stubs, idle_days={"+14155557100": 30})
    stubs["ka-f0"].fail_next(1, status=429, retry_after=1)
    stubs["ka-f0"].fail_next(1, status=503)
    # 3. Always 500: three attempts with backoff, then it gives up for the day.
    _pool(steady, "broken", partners=["friend@example.com"])
    _servers(steady, "broken", BROKEN, stubs, idle_days={"+14155557200": 30})
    stubs["ka-b0"].fail_next(100, status=500)
    # 4. One server's Secret is missing; the other server of the pool goes on.
    _pool(steady, "locked", partners=["friend@example.com"])
    _servers(steady, "locked", {"ka-l0": LOCKED["ka-l0"]}, stubs, idle_days={"+14155557500": 30},
             secret="missing-token")
    _servers(steady, "locked", {"ka-l1": LOCKED["ka-l1"]}, stubs, idle_days={"+14155557510": 30})
    # 5. Keep-alive off: nothing is sent, but a line past the deadline is still reported.
    _pool(steady, "disabled", enabled=False)
    _servers(steady, "disabled", DISABLED, stubs, idle_days={"+14155557600": 50, "+14155557601": 25})
    # 6. Planned for the next minute; the operator is killed right after planning.
    _pool(restart, "restart", partners=["+14155550888"])
    _servers(restart, "restart", RESTART, stubs, idle_days={"+14155557300": 30})
    # 7. The send hangs for 6s; the operator is killed while it is in flight.
    _pool(inflight, "inflight", partners=["+14155550777"])
    _servers(inflight, "inflight", INFLIGHT, stubs, idle_days={"+14155557400": 30})
    stubs["ka-i0"].delay_next(1, seconds=6)

    for pools in SANDBOXES.values():
        for servers in pools.values():
            for name, lines in servers.items():
                run.box(name).export(name, lines)
    _open_windows(run, now=["quiet", "flaky", "broken", "locked", "disabled", "inflight"], later=["restart"])
    run.mark("windows open: restart's at the next minute, the others now")
    # Crash 1 has to come before the restart pool's window opens: its operator starts first. The
    # inflight operator starts only after crash 1, so that the test is free to watch for crash 2.
    for box in (restart, steady):
        box.start_operator(extra_args=FLAGS)
    run.mark("restart and steady operators started")

    # Crash 1: the restart pool's exchange is in status, due in the next minute, not yet sent.
    # (kopf posts events from a queue, so a SIGKILL loses what is still queued; the events that
    # the tests look for come from the steady operator, which is never killed.)
    planned = wait_for(lambda: run.planned("ka-r0", "+14155557300"), timeout=30,
                       what="the restart pool's plan in status")
    restart.operators[-1].kill()
    run.mark(f"crash 1: killed; ka-r0 planned for {planned}")
    run.notes["planned_before_crash"] = planned
    run.notes["requests_at_crash_1"] = len(run.requests("ka-r0"))
    _widen_window(run, "restart")
    restart.start_operator(extra_args=FLAGS)
    run.mark("crash 1: restarted")

    for server, line in (("ka-q0", "+14155557000"), ("ka-f0", "+14155557100"), ("ka-b0", "+14155557200"),
                         ("ka-l0", "+14155557500"), ("ka-l1", "+14155557510")):
        planned = wait_for(functools.partial(run.planned, server, line), timeout=30,
                           what=f"the plan of {line} in status")
        run.mark(f"{line} planned for {planned}")
    for pool in ("quiet", "flaky", "broken", "locked"):
        _widen_window(run, pool)

    # Crash 2: while the in-flight pool's request is held by its server (6s).
    inflight.start_operator(extra_args=FLAGS)
    run.mark("inflight operator started")
    planned = wait_for(lambda: run.planned("ka-i0", "+14155557400"), timeout=30,
                       what="the in-flight pool's plan in status")
    _widen_window(run, "inflight")  # before the kill: the resend after it falls inside the window
    run.mark(f"ka-i0 planned for {planned}")
    wait_for(lambda: any(r.status is None for r in run.requests("ka-i0")), timeout=150,
             what="the in-flight pool's request to arrive")
    inflight.operators[-1].kill()
    run.mark("crash 2: killed while ka-i0's request is held")
    inflight.start_operator(extra_args=FLAGS)
    run.mark("crash 2: restarted")

    # The Secret of ka-l0 appears only after its absence has been reported.
    wait_for(lambda: run.condition("messagingservers", "ka-l0", "CredentialsAvailable").get("status") == "False",
             timeout=150, what="CredentialsAvailable=False on ka-l0")
    run.mark("CredentialsAvailable=False on ka-l0")
    run.notes["locked_condition"] = run.condition("messagingservers", "ka-l0", "CredentialsAvailable")
    run.notes["locked_requests_before_fix"] = len(run.requests("ka-l0"))

    def settled() -> bool:
        return (run.phase("ka-q0", "+14155557000") == "Replied"
                and run.phase("ka-f0", "+14155557100") == "Sent"
                and run.phase("ka-b0", "+14155557200") == "Failed"
                and run.phase("ka-r0", "+14155557300") == "Sent"
                and run.phase("ka-i0", "+14155557400") == "Sent"
                and run.phase("ka-l1", "+14155557510") == "Sent")

    wait_for(settled, timeout=200, interval=1.0, what="every scenario to settle")
    run.mark("settled")
    _secret(steady, "missing-token", TOKEN)
    wait_for(lambda: run.condition("messagingservers", "ka-l0", "CredentialsAvailable").get("status") == "True",
             timeout=40, what="CredentialsAvailable=True once the Secret exists")
    time.sleep(3)  # a few more passes: nothing else may go out
    run.metrics = "\n".join(box.operators[-1].metrics() for box in run.boxes.values())
    run.log = "\n".join(box.operator_logs() for box in run.boxes.values())
    run.mark("done")


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
    assert run.events("KeepAliveSent", involving="ka-q0") and run.events("KeepAliveReplied", involving="ka-q1")
    summary = run.status("linepools", "quiet")["keepAlive"]
    assert summary["sentToday"] == 1 and summary["due"] == 0 and summary["atRisk"] == 0
    assert run.condition("linepools", "quiet", "KeepAliveHealthy")["status"] == "True"


def test_every_request_carries_the_contract(run: Run) -> None:
    request = next(r for r in run.requests("ka-q0") if r.status == 202)
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert set(request.body) == {"from", "to", "text", "idempotencyKey"}


def test_429_defers_and_5xx_retries_then_it_is_sent_once(run: Run) -> None:
    statuses = [r.status for r in run.requests("ka-f0")]
    assert statuses == [429, 503, 202]
    keys = {r.body["idempotencyKey"] for r in run.requests("ka-f0")}
    assert len(keys) == 1
    assert run.events("KeepAliveDeferred", involving="ka-f0")
    assert run.events("KeepAliveRetrying", involving="ka-f0")
    assert run.events("KeepAliveSent", involving="ka-f0")
    assert 'linepool_keepalive_sends_total{namespace="' in run.metrics
    assert 'outcome="deferred"' in run.metrics and 'outcome="retrying"' in run.metrics


def test_a_server_that_keeps_failing_is_given_up_on_for_the_day(run: Run) -> None:
    requests = run.requests("ka-b0")
    assert [r.status for r in requests] == [500, 500, 500]
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(requests)]
    assert gaps[1] > gaps[0] >= 0.9  # capped exponential backoff: 1s, then 2s
    assert run.line("ka-b0", "+14155557200")["keepAlive"]["attempts"] == 3
    (event,) = run.events("KeepAliveFailed", involving="ka-b0")
    assert "gave up after 3 attempt(s)" in event["message"]
    healthy = run.condition("linepools", "broken", "KeepAliveHealthy")
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
    assert run.events("SecretNotFound", involving="ka-l0")
    assert len(run.messages("ka-l1")) == 1  # the other server of the pool was not held up


def test_the_token_never_leaves_the_secret(run: Run) -> None:
    assert TOKEN not in run.log
    assert len(run.boxes) == len(SANDBOXES)
    for box in run.boxes.values():
        events = json.dumps(box.api.list("events", box.namespace))
        statuses = json.dumps([s.get("status") for s in box.api.list("messagingservers", box.namespace)])
        pools = json.dumps([p.get("status") for p in box.api.list("linepools", box.namespace)])
        assert TOKEN not in events and TOKEN not in statuses and TOKEN not in pools


def test_disabled_keep_alive_sends_nothing_but_still_reports_lines_at_risk(run: Run) -> None:
    assert run.requests("ka-d0") == []
    line = run.line("ka-d0", "+14155557600")
    assert line["state"] == "AtRisk" and "keepAlive" not in line
    assert run.line("ka-d0", "+14155557601")["state"] != "AtRisk"
    assert run.events("LineAtRisk", involving="ka-d0")
    healthy = run.condition("linepools", "disabled", "KeepAliveHealthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "LinesAtRisk")
    assert run.status("linepools", "disabled")["keepAlive"]["atRisk"] == 1
    assert any(line.startswith("linepool_pool_lines{") and 'pool="disabled"' in line and 'state="AtRisk"' in line
               and line.endswith(" 1.0") for line in run.metrics.splitlines())
