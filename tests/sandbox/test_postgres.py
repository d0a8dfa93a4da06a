"""
The real PostgreSQL the placement service's tests run on: it starts, keeps committed data over a
restart, isolates databases, never runs as root, and leaves nothing behind when stopped.

Most tests share the session's server (``postgres``, ``postgres_url``); the ones about stopping
start servers of their own (about a second each).
"""
import os
import pathlib
import pwd
import signal
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from linepool.sandbox import postgres as postgres_module
from linepool.sandbox.postgres import PostgresNotInstalled, PostgresServer
from tests.conftest import started_postgres

pytestmark = pytest.mark.integration


def _uid(pid: int) -> int:
    """The real UID of a process, from /proc (works for processes of other users)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for PID {pid}")


def _alive(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of the test's own, for tests that stop it; skipped like ``postgres`` when not installed."""
    yield from started_postgres()


def test_committed_rows_survive_a_restart(postgres: PostgresServer, postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as connection:
        connection.execute("CREATE TABLE lines (id serial PRIMARY KEY, name text NOT NULL)")
        connection.execute("INSERT INTO lines (name) VALUES (%s)", ("line-a",))
    port, pid = postgres.port, postgres.pid

    postgres.restart()

    assert postgres.port == port
    assert postgres.pid != pid
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT name FROM lines").fetchall() == [("line-a",)]


def test_a_halted_server_refuses_connections_until_started(postgres: PostgresServer, postgres_url: str) -> None:
    postgres.halt()
    try:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(postgres_url, connect_timeout=2)
    finally:
        postgres.start()
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_databases_are_isolated(postgres: PostgresServer, postgres_url: str) -> None:
    other_url = postgres.create_database("isolation_other")
    try:
        with psycopg.connect(postgres_url) as connection:
            connection.execute("CREATE TABLE mine (x int)")
        with psycopg.connect(other_url) as connection:
            tables = connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()
            assert tables == []
            assert connection.execute("SELECT current_database()").fetchone() == ("isolation_other",)
    finally:
        postgres.drop_database("isolation_other")


def test_the_url_is_the_linepool_superuser_over_loopback(postgres: PostgresServer) -> None:
    assert postgres.url == f"postgresql://linepool@127.0.0.1:{postgres.port}/linepool"
    with psycopg.connect(postgres.url) as connection:
        row = connection.execute(
            "SELECT current_user, current_database(), inet_server_addr()::text, "
            "current_setting('max_connections'), current_setting('fsync')").fetchone()
    assert row == ("linepool", "linepool", "127.0.0.1/32", "200", "on")


def test_the_server_never_runs_as_root(postgres: PostgresServer) -> None:
    assert postgres.pid is not None
    uid = _uid(postgres.pid)
    assert uid != 0
    if os.geteuid() == 0:
        assert uid == pwd.getpwnam("postgres").pw_uid
    else:
        assert uid == os.getuid()
    assert all(_uid(child) == uid for child in _children(postgres.pid))


def test_stop_leaves_no_process_and_no_directory(own_server: PostgresServer) -> None:
    assert own_server.pid is not None and own_server.workdir is not None
    pids = [own_server.pid, *_children(own_server.pid)]
    workdir = own_server.workdir
    assert len(pids) > 1  # the postmaster and its background workers
    connection = psycopg.connect(own_server.url, autocommit=True)
    backend = connection.execute("SELECT pg_backend_pid()").fetchone()
    own_server.stop()  # with a client still connected
    connection.close()
    assert backend is not None
    assert [pid for pid in [*pids, backend[0]] if _alive(pid)] == []
    assert not workdir.exists()
    assert own_server.pid is None
    own_server.stop()  # idempotent


def test_a_server_that_ignores_shutdown_is_killed(own_server: PostgresServer) -> None:
    assert own_server.pid is not None
    pids = [own_server.pid, *_children(own_server.pid)]
    os.kill(own_server.pid, signal.SIGSTOP)  # a frozen postmaster never answers pg_ctl stop

    own_server.halt(timeout=1)

    assert [pid for pid in pids if _alive(pid)] == []


def test_missing_postgresql_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setattr(postgres_module, "DEBIAN_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PostgresNotInstalled, match="apt-get install"):
        postgres_module.find_bin_dir()


def test_serve_prints_the_url_and_stops_on_ctrl_c() -> None:
    try:
        postgres_module.find_bin_dir()
    except PostgresNotInstalled as e:
        pytest.skip(str(e))
    process = subprocess.Popen([sys.executable, "-m", "linepool.sandbox.postgres", "serve"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("postgresql://linepool@127.0.0.1:"), process.stderr.read() if process.stderr else ""
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
