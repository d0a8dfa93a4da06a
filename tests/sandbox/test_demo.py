"""
``make demo`` (``python -m linepool.sandbox.demo``), as a user runs it: a child process.

The whole story takes two minutes, so these tests check what a short run can show: the
demo starts every piece, draws the pool and its servers, says what it did not get to show,
and stops everything it started; and a busy port 19090 is refused at once, clearly. The
traffic model, the drifting line and the milestones the demo requires are checked in-process,
without any server.
"""
import collections
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from linepool.sandbox.demo import (
    BURST_LIMIT,
    DRIFT,
    FLAGGED_REASON,
    MINUTE_MARGIN,
    Drift,
    EventRow,
    FlagRiskRow,
    LineHealthRow,
    Profile,
    ServerRow,
    Snapshot,
    Timeline,
    Traffic,
    demo_manifests,
    summarize,
)

PORT = 19090
REPO = pathlib.Path(__file__).resolve().parents[2]


def run_demo(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / 'operator'))
    return subprocess.run(
        [sys.executable, '-m', 'linepool.sandbox.demo', *args], capture_output=True, text=True,
        timeout=timeout, env=env, cwd=REPO, check=False,
        # The demo unwinds on SIGINT; make sure a CI runner that ignores it does not leak into the child.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def port_free() -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(('127.0.0.1', PORT))
        except OSError:
            return False
        return True


@pytest.fixture
def free_demo_port() -> None:
    if not port_free():
        pytest.skip(f"port {PORT} is in use here (a demo running?); the demo needs it")


@pytest.mark.integration
@pytest.mark.usefixtures('free_demo_port')
def test_a_busy_port_is_refused_at_once_and_clearly(tmp_path: pathlib.Path) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(('127.0.0.1', PORT))
        squatter.listen()
        started = time.monotonic()
        result = run_demo('--duration', '20', '--workdir', str(tmp_path / 'demo'), timeout=15)
    assert result.returncode == 2, result.stdout + result.stderr
    assert time.monotonic() - started < 10
    assert f"port {PORT} on 127.0.0.1 is busy" in result.stderr
    assert f"http://127.0.0.1:{PORT}" in result.stderr
    assert not (tmp_path / 'demo').exists(), "nothing should start (or be written) when the port is taken"


@pytest.mark.integration
@pytest.mark.usefixtures('free_demo_port')
@pytest.mark.skipif(shutil.which('prometheus') is None, reason="needs Debian's prometheus package")
def test_a_short_run_shows_the_pool_and_stops_everything(tmp_path: pathlib.Path) -> None:
    workdir = tmp_path / 'demo'
    started = time.monotonic()
    result = run_demo('--duration', '20', '--workdir', str(workdir), timeout=60)
    took = time.monotonic() - started
    out = result.stdout

    # 20s is too short for the story: it says so, and which parts are missing.
    assert result.returncode == 1, out + result.stderr
    said = ' '.join(out.split())  # the verdict is wrapped at 100 columns
    assert "NOT SHOWN: no server reached stopAt" in said
    assert "the whole story needs about 120s" in said
    assert took < 30, f"the demo ran {took:.0f}s for --duration 20"

    # Not a TTY: compact blocks, no escape codes, nothing wider than 100 columns (but the
    # paths to the logs, which are long in a pytest tmp_path and short in .demo/).
    assert '\x1b[' not in out
    assert [line for line in out.splitlines() if len(line) > 100 and str(workdir) not in line] == []
    # The view of the live pool, as drawn from the operator's status.
    assert "LinePool demo/support" in out
    assert "pool utilization [" in out
    for server in ('support-0', 'support-1'):
        assert any(line.startswith(server) and 'Active' in line for line in out.splitlines()), out
    assert "new users go to (status.assignableLines, in order): …0100 …0110 …0101" in out
    assert "recommendation: None" in out
    assert f"line health · burst limit {BURST_LIMIT} in 1m · lines at risk of an Apple flag: 0" in out
    assert "Summary after 2" in out
    # The health story comes later too: both its milestones are missing, and no healthy line was at risk.
    assert "…0101 was not seen at risk of a flag for its burst" in said
    assert "no forensics for the flag of …0101 (no LineFlagged event saying \"pace sends\")" in said
    assert "healthy traffic were at risk" not in said

    # Everything was stopped: the port is free again, and the operator was stopped gracefully.
    assert port_free()
    assert "Signal SIGTERM is received" in (workdir / 'operator.log').read_text()


class Sink:
    """Records what the simulated users send and which lines new users start conversations on."""

    def __init__(self) -> None:
        self.sent: collections.Counter[tuple[str, str]] = collections.Counter()
        self.new: collections.Counter[tuple[str, str]] = collections.Counter()

    def send(self, server: str, line: str, n: int = 1) -> None:
        self.sent[server, line] += n

    def receive(self, server: str, line: str, n: int = 1) -> None:
        pass

    def new_conversations(self, server: str, line: str, n: int = 1) -> None:
        self.new[server, line] += n


def test_new_users_follow_the_assignable_lines_and_the_traffic_is_deterministic() -> None:
    sink = Sink()
    traffic = Traffic(sink=sink, activity=Profile(((0.0, 0.5),)), arrivals=Profile(((0.0, 2.0),)))
    traffic.add_lines(server='a', lines=['a1', 'a2'], conversations=(4, 2))
    traffic.add_lines(server='b', lines=['b1'])
    both = [('a', 'a1'), ('b', 'b1'), ('a', 'a2')]
    for tick in range(4):
        traffic.tick(elapsed=tick * 0.5, seconds=0.5, assignable=both)
    # 2 users/s for 2s, round-robin over the listed lines in their order.
    assert sink.new == {('a', 'a1'): 2, ('b', 'b1'): 1, ('a', 'a2'): 1}

    # Server a leaves the list (saturated): every new user goes to b, none to a any more.
    placed = traffic.tick(elapsed=2.0, seconds=2.0, assignable=[('b', 'b1')])
    assert placed == {'b': 4}
    # Existing conversations keep talking on a, in proportion to how many are open there.
    assert sink.sent['a', 'a1'] > sink.sent['a', 'a2'] > 0
    assert traffic.sent == sum(sink.sent.values())


def test_a_halted_line_sends_nothing_and_gets_no_new_user() -> None:
    sink = Sink()
    traffic = Traffic(sink=sink, activity=Profile(((0.0, 0.5),)), arrivals=Profile(((0.0, 2.0),)))
    traffic.add_lines(server='a', lines=['a1', 'a2'], conversations=(4, 4))
    traffic.halt(server='a', line='a1')
    for tick in range(4):
        traffic.tick(elapsed=tick * 0.5, seconds=0.5, assignable=[('a', 'a1'), ('a', 'a2')])
    assert sink.sent['a', 'a1'] == 0 and sink.new['a', 'a1'] == 0
    assert sink.sent['a', 'a2'] > 0 and sink.new['a', 'a2'] == 4


@pytest.mark.parametrize('phase', [0.0, 20.0, 45.0, 48.5, 52.0, 59.5])
def test_the_burst_fits_one_wall_clock_minute_and_the_flag_comes_after_it(phase: float) -> None:
    # The forensics read sends per minute at whole minutes: a burst cut in two would read as two halves.
    class Fleet:
        def __init__(self) -> None:
            self.sends: list[tuple[float, int]] = []
            self.replies = 0
            self.flagged: float | None = None

        def send(self, server: str, line: str, n: int = 1) -> None:
            assert (server, line) == (DRIFT.server, DRIFT.line)
            self.sends.append((clock[0], n))

        def receive(self, server: str, line: str, n: int = 1) -> None:
            self.replies += n

        def set_line_state(self, server: str, line: str, state: str) -> None:
            assert state == 'flagged' and self.flagged is None
            self.flagged = clock[0]

    start = 1_800_000_000.0 - 1_800_000_000.0 % 60 + phase  # traffic starts `phase` seconds into a minute
    clock = [start]
    fleet = Fleet()
    drift = Drift(plan=DRIFT, sink=fleet, clock=lambda: clock[0])
    while clock[0] < start + 150:
        drift.tick(elapsed=clock[0] - start, seconds=0.5)
        clock[0] += 0.5
    assert sum(n for _, n in fleet.sends) == DRIFT.messages == drift.sent
    assert fleet.replies == int(DRIFT.messages * DRIFT.reply_ratio)
    first, last = fleet.sends[0][0], fleet.sends[-1][0]
    assert first - start >= DRIFT.start
    minute = first - first % 60
    assert first >= minute + MINUTE_MARGIN
    assert last + 0.5 <= minute + 60 - MINUTE_MARGIN
    assert last - first <= DRIFT.seconds
    assert fleet.flagged is not None
    assert fleet.flagged >= minute + 60 + MINUTE_MARGIN and fleet.flagged - start >= DRIFT.flag_at
    assert drift.flagged_at is not None


def test_the_demo_pool_fits_line_health_to_its_clock() -> None:
    pool = {'kind': 'LinePool', 'metadata': {'name': 'support'},
            'spec': {'quotas': {'timezone': 'America/New_York'}, 'keepAlive': {}}}
    for hour in (3, 12, 23):  # the quiet hours never hold the demo's run, whenever it is
        now = datetime(2026, 1, 5, hour, 30, tzinfo=UTC)
        spec = demo_manifests(manifests=[pool], relays={}, now=now)[0]['spec']
        assert spec['health']['burst'] == {'messages': BURST_LIMIT, 'within': '1m'}
        quiet = spec['health']['offHours']['quiet']
        local = now.astimezone(ZoneInfo('America/New_York'))
        assert quiet['start'] == (local + timedelta(hours=2)).strftime('%H:%M') != quiet['end']


def _snapshot(*, risks: dict[str, str], assignable: list[str], server_assignable: bool = True,
              events: tuple[EventRow, ...] = ()) -> Snapshot:
    since = datetime(2026, 1, 5, 12, 0, 30, tzinfo=UTC)
    server = ServerRow(
        name=DRIFT.server, phase='Active', utilization=0.4, assignable=server_assignable,
        lines=('+14155550100', DRIFT.line, '+14155550102'), created_by_operator=False, created=None,
        saturated_since=None,
        health=tuple(LineHealthRow(line=line, state='Active', last_flag=None,
                                   risks=(FlagRiskRow(pattern=pattern, message='512 messages in 1m, limit 450',
                                                      since=since),))
                     for line, pattern in risks.items()),
    )
    return Snapshot(pool={'status': {'assignableLines': assignable}}, servers=(server,), events=events)


def test_the_health_milestones_are_required_and_healthy_lines_must_stay_healthy(tmp_path: pathlib.Path) -> None:
    started = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    flagged = EventRow(at=started + timedelta(seconds=90), type='Warning', reason=FLAGGED_REASON, obj=DRIFT.server,
                       message=f"line {DRIFT.line} was flagged at 2026-01-05T12:01:28Z: burst: 530 messages in 1m "
                               "before the flag (limit 450); pace sends")

    def missing(timeline: Timeline) -> list[str]:
        return [what for what in summarize(timeline=timeline, traffic=None, elapsed=120, workdir=tmp_path)[1]
                if 'ServerSaturated' not in what and 'ScaledUp' not in what and 'KeepAliveSent' not in what]

    nothing = Timeline(started=started, drift=DRIFT)
    assert len(missing(nothing)) == 2

    # At risk, but still listed as assignable (DryRun), or only once its server was out of rotation: not the story.
    for snapshot in (_snapshot(risks={DRIFT.line: 'Burst'}, assignable=[DRIFT.line]),
                     _snapshot(risks={DRIFT.line: 'Burst'}, assignable=[], server_assignable=False)):
        timeline = Timeline(started=started, drift=DRIFT)
        timeline.observe(snapshot=snapshot, elapsed=40)
        assert timeline.left_rotation is None

    shown = Timeline(started=started, drift=DRIFT)
    shown.observe(snapshot=_snapshot(risks={DRIFT.line: 'Burst'}, assignable=['+14155550100']), elapsed=40)
    shown.observe(snapshot=_snapshot(risks={DRIFT.line: 'Burst'}, assignable=[], events=(flagged,)), elapsed=92)
    assert shown.left_rotation == (30.0, 'Burst: 512 messages in 1m, limit 450')
    assert missing(shown) == []
    summary = '\n'.join(summarize(timeline=shown, traffic=None, elapsed=120, workdir=tmp_path)[0])
    assert "+30s  …0101 at risk of a flag (Burst: 512 messages in 1m, limit 450): out of" in summary
    assert "pace sends" in summary
    assert all(len(line) <= 100 for line in summary.splitlines() if str(tmp_path) not in line)

    # A healthy line at risk of a flag means the demo's limits misfit its traffic: the demo fails.
    misfit = Timeline(started=started, drift=DRIFT)
    misfit.observe(snapshot=_snapshot(risks={DRIFT.line: 'Burst', '+14155550100': 'Burst'},
                                      assignable=[], events=(flagged,)), elapsed=92)
    assert [what for what in missing(misfit) if 'healthy traffic' in what] == [
        "lines with healthy traffic were at risk of a flag, so the demo's health limits misfit its traffic: "
        "…0100 (Burst: 512 messages in 1m, limit 450)"]
