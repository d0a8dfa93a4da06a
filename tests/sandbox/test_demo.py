"""
``make demo`` (``python -m linepool.sandbox.demo``), as a user runs it: a child process.

The whole story takes two minutes, so these tests check what a short run can show: the
demo starts every piece, draws the pool and its servers, says what it did not get to show,
and stops everything it started; and a busy port 19090 is refused at once, clearly. The
traffic model itself is checked in-process, without any server.
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

import pytest

from linepool.sandbox.demo import Profile, Traffic

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
    assert "NOT SHOWN: no server reached stopAt" in out
    assert "the whole story needs about 120s" in out
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
    assert "Summary after 2" in out

    # Everything was stopped: the port is free again, and the operator was stopped gracefully.
    assert port_free()
    assert "Signal SIGTERM is received" in (workdir / 'operator.log').read_text()


def test_new_users_follow_the_assignable_lines_and_the_traffic_is_deterministic() -> None:
    class Sink:
        def __init__(self) -> None:
            self.sent: collections.Counter[tuple[str, str]] = collections.Counter()
            self.new: collections.Counter[tuple[str, str]] = collections.Counter()

        def send(self, server: str, line: str, n: int = 1) -> None:
            self.sent[server, line] += n

        def receive(self, server: str, line: str, n: int = 1) -> None:
            pass

        def new_conversations(self, server: str, line: str, n: int = 1) -> None:
            self.new[server, line] += n

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
