"""
A real PostgreSQL server (Debian's ``postgresql`` 15) for tests, the bench and the demo.

The placement service stores its data in PostgreSQL, so the sandbox runs the real server
rather than a fake: transactions, locking, constraint errors and restarts behave exactly as
they will in production.

:class:`PostgresServer` owns one throw-away cluster: it finds the server binaries (the newest
``/usr/lib/postgresql/<version>/bin``, else ``initdb``/``pg_ctl`` on PATH), runs ``initdb`` in a
temporary directory (on ``/dev/shm`` when there is one), starts the postmaster with ``pg_ctl``
on a free port of 127.0.0.1 with its unix socket in that directory, creates the ``linepool``
database and waits until it accepts connections. The role ``linepool`` is the superuser and
loopback connections are trusted, so :attr:`PostgresServer.url` carries no password.

PostgreSQL refuses to run as root: when this process is root, the directory is handed to the
``postgres`` system user and every server command runs through ``runuser -u postgres --``.

Outages: :meth:`PostgresServer.halt` stops the server and keeps the data and the port (clients
get "connection refused"), :meth:`~PostgresServer.start` brings it back; :meth:`~PostgresServer.restart`
does both. :meth:`~PostgresServer.stop` stops it by PID and removes everything.

``python -m linepool.sandbox.postgres serve`` runs one until interrupted and prints its URL.
"""
import contextlib
import os
import pathlib
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Self

import psycopg
from psycopg import sql

from linepool.sandbox.lifecycle import Service
from linepool.sandbox.prometheus import free_port

INSTALL_HINT = "install it with: apt-get install -y --no-install-recommends postgresql"
SUPERUSER = "linepool"
DATABASE = "linepool"
# The system account Debian's package creates; the server runs as it when we are root.
SERVICE_ACCOUNT = "postgres"
DEBIAN_ROOT = pathlib.Path("/usr/lib/postgresql")
SCRATCH_MIN_FREE = 1 << 30
# /proc/PID/stat states of a process that has exited but not been reaped yet.
_DEAD = ("Z", "X")
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# Values are postgresql.conf literals. Everything not listed keeps PostgreSQL's defaults, durability
# included (fsync stays on): tests judge what survives a crash, and a server cheating on fsync would lie.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    # 200 connections need no big cache: the test data is tiny, and the memory is shared by the machine.
    "shared_buffers": "32MB",
    # Dynamic shared memory in the data directory rather than /dev/shm/PostgreSQL.*: a server that
    # had to be SIGKILLed cannot clean up after itself, and removing the directory then does it.
    "dynamic_shared_memory_type": "mmap",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


class PostgresNotInstalled(RuntimeError):
    """No PostgreSQL server binaries here; the message says how to install them."""


def find_bin_dir() -> pathlib.Path:
    """The directory with ``initdb``, ``pg_ctl`` and ``postgres``: Debian's newest version, else PATH's."""
    def version(path: pathlib.Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (0,)

    # Debian keeps the server binaries off PATH (several major versions can be installed side by side).
    candidates = sorted((path for path in DEBIAN_ROOT.glob("*") if (path / "bin" / "initdb").is_file()),
                        key=version, reverse=True) if DEBIAN_ROOT.is_dir() else []
    if candidates:
        return candidates[0] / "bin"
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return pathlib.Path(initdb).resolve().parent
    raise PostgresNotInstalled(f"PostgreSQL's initdb and pg_ctl are not found in {DEBIAN_ROOT}/*/bin "
                               f"nor on PATH; {INSTALL_HINT}")


def _scratch_root() -> str | None:
    """``/dev/shm`` when usable: initdb and every commit fsync, which costs nothing on a tmpfs.

    A cluster takes ~40 MB and each database ~8 MB more, so a small ``/dev/shm`` (Docker's default
    is 64 MB) is passed over for the default temporary directory.
    """
    shm = pathlib.Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK | os.X_OK)):
        return None
    stats = os.statvfs(shm)
    return str(shm) if stats.f_bavail * stats.f_frsize >= SCRATCH_MIN_FREE else None


class PostgresServer(Service):
    """
    One PostgreSQL cluster on 127.0.0.1, in a temporary directory of its own.

    The port (picked once, if not given), the directory and the data survive :meth:`halt` and
    :meth:`restart`; :meth:`stop` (and leaving the ``with`` block) removes them.
    """

    def __init__(self, *, port: int = 0, ready_timeout: float = 20.0) -> None:
        super().__init__()
        self.port = port or free_port()
        self.ready_timeout = ready_timeout
        self.workdir: pathlib.Path | None = None
        self._bin_dir: pathlib.Path | None = None
        self._pid: int | None = None
        # Root cannot run the server: everything then runs as (and belongs to) the service account.
        self._account = self._service_account() if os.geteuid() == 0 else None

    # ------------------------------------------------------------------------------------------
    # Addresses.

    @property
    def url(self) -> str:
        """``postgresql://linepool@127.0.0.1:PORT/linepool``: the superuser, over TCP, no password."""
        return self.database_url(DATABASE)

    def database_url(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while it runs (it is not our child: ``pg_ctl`` detaches it)."""
        return self._pid

    @property
    def running(self) -> bool:
        return self._pid is not None and _alive(self._pid)

    @property
    def data_dir(self) -> pathlib.Path:
        assert self.workdir is not None, "PostgreSQL is not started"
        return self.workdir / "data"

    @property
    def socket_dir(self) -> pathlib.Path:
        assert self.workdir is not None, "PostgreSQL is not started"
        return self.workdir / "socket"

    @property
    def log_path(self) -> pathlib.Path:
        assert self.workdir is not None, "PostgreSQL is not started"
        return self.workdir / "postgres.log"

    # ------------------------------------------------------------------------------------------
    # Lifecycle.

    def start(self) -> Self:
        """Start the server (creating the cluster on first use) and wait until it accepts connections."""
        if self.running:
            raise RuntimeError("PostgreSQL is already running")
        self._bin_dir = self._bin_dir or find_bin_dir()
        fresh = self.workdir is None
        try:
            if fresh:
                self._make_workdir()
                self._initdb()
            self._pg_ctl("start", "--wait", f"--timeout={int(self.ready_timeout)}", f"--log={self.log_path}",
                         timeout=self.ready_timeout + 10)
            self._pid = self._read_pid()
            self._wait_ready("postgres")
            if fresh:
                self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            self._wait_ready(DATABASE)
        except BaseException:
            # A failed restart keeps the data: the caller may want to look at it, or try again.
            if fresh:
                self.stop()
            else:
                self.halt()
            raise
        return self

    def halt(self, timeout: float = 10.0) -> None:
        """Stop the server, keeping its data and port: clients get "connection refused" until :meth:`start`."""
        pid = self._pid
        if pid is None:
            return
        if _alive(pid) and self.workdir is not None:
            # "fast": roll back open transactions and disconnect clients, then a clean shutdown.
            # Whatever goes wrong here (a frozen or half-dead server), the SIGKILL below settles it.
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError, OSError):
                self._pg_ctl("stop", "--mode=fast", "--wait", f"--timeout={int(timeout)}", timeout=timeout + 5)
        if _alive(pid):
            # Every backend calls setsid(), so no process group holds them all: each is killed by PID,
            # or they would linger until they notice that the postmaster is gone.
            victims = [pid, *_children(pid)]
            for victim in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, signal.SIGKILL)
            for victim in victims:
                _wait_gone(victim, timeout)
        self._pid = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same data (a server restart)."""
        self.halt()
        self.start()

    def stop(self) -> None:
        """Stop the server by PID and remove its directory. Idempotent."""
        self.halt()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    # ------------------------------------------------------------------------------------------
    # Databases.

    def create_database(self, name: str) -> str:
        """A new, empty database (for one test); returns its URL."""
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_checked(name))))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still in it; a missing one is fine."""
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_checked(name))))

    # ------------------------------------------------------------------------------------------
    # Internals.

    @staticmethod
    def _service_account() -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(SERVICE_ACCOUNT)
        except KeyError:
            raise PostgresNotInstalled(
                f"running as root, PostgreSQL needs the {SERVICE_ACCOUNT!r} system user, which does not exist; "
                f"{INSTALL_HINT}") from None

    def _make_workdir(self) -> None:
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="linepool-postgres-", dir=_scratch_root()))
        self.socket_dir.mkdir()
        if self._account is not None:
            for path in (self.workdir, self.socket_dir):
                os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def _run(self, program: str, *args: str, timeout: float) -> None:
        assert self._bin_dir is not None and self.workdir is not None
        command = [str(self._bin_dir / program), *args]
        if self._account is not None:
            command = ["runuser", "-u", self._account.pw_name, "--", *command]
        # The server inherits nothing of ours that could point it elsewhere (PGDATA, PGPORT ...).
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        result = subprocess.run(command, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{program} {args[0]} failed ({result.returncode}):\n"
                               f"{(result.stderr or result.stdout).strip()}\n{self._log_tail()}")

    def _initdb(self) -> None:
        self._run("initdb", f"--pgdata={self.data_dir}", f"--username={SUPERUSER}", "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions", timeout=60)
        settings = {**SETTINGS, "port": str(self.port), "unix_socket_directories": f"'{self.socket_dir}'"}
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        # Appending keeps the file's owner (the service account) and overrides initdb's values.
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# linepool sandbox\n" + lines)

    def _pg_ctl(self, action: str, *args: str, timeout: float) -> None:
        self._run("pg_ctl", action, f"--pgdata={self.data_dir}", "--silent", *args, timeout=timeout)

    def _read_pid(self) -> int:
        # postmaster.pid is written by the server itself; pg_ctl --wait returns only once it exists.
        first_line = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").split("\n", 1)[0]
        return int(first_line)

    def _admin(self, statement: sql.Composed) -> None:
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        with psycopg.connect(self.database_url("postgres"), autocommit=True, connect_timeout=5) as connection:
            connection.execute(statement)

    def _wait_ready(self, database: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self._pid is None or not _alive(self._pid):
                raise RuntimeError(f"PostgreSQL exited during start-up\n{self._log_tail()}")
            try:
                with psycopg.connect(self.database_url(database), connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError as e:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"PostgreSQL did not accept connections within {self.ready_timeout}s: "
                                       f"{e}\n{self._log_tail()}") from e
            time.sleep(0.05)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except (OSError, AssertionError):
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _checked(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r} must be lower-case letters, digits and '_' (at most 63)")
    return name


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (the postmaster is not our child: we cannot reap it)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may contain anything.
    return stat.rsplit(")", 1)[1].split()[0] not in _DEAD


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text(encoding="utf-8").rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] not in _DEAD:
                found.append(int(stat.parent.name))
    return found


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"PostgreSQL (PID {pid}) did not exit within {timeout}s")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------------
# Command line.

def main(argv: Sequence[str] | None = None) -> int:
    """``serve``: run one PostgreSQL until interrupted, printing its URL."""
    import argparse  # noqa: PLC0415  # only the command line needs it

    parser = argparse.ArgumentParser(prog="python -m linepool.sandbox.postgres",
                                     description=(__doc__ or "").strip().split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run PostgreSQL until SIGINT/SIGTERM")
    serve.add_argument("--port", type=int, default=0, help="default: a free port")
    args = parser.parse_args(argv)
    try:
        with PostgresServer(port=args.port) as server:
            print(server.url, flush=True)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except PostgresNotInstalled as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
