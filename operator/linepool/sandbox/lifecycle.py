"""The start/stop contract every sandbox service follows, the with-statement on top of it, and a
child process of ours (``linepool run``, ``linepool serve``) with its log in a file."""

import os
import pathlib
import signal
import subprocess
from types import TracebackType
from typing import IO, Self


class Service:
    """Something started and stopped by hand or by ``with``. ``close`` is what ``with`` calls on
    the way out: ``stop`` unless a service has more to clean up (Prometheus's work directory)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class ChildProcess(Service):
    """One process of ours, configured by ``KUBECONFIG``, logging to ``log_path``, stopped by signal.

    Subclasses say what to run (``command``); ``stop`` is the graceful stop Kubernetes gives a
    pod, ``kill`` a crash.
    """

    kubeconfig: pathlib.Path
    log_path: pathlib.Path
    what = "the process"

    def __init__(self, *, kubeconfig: pathlib.Path, log_path: pathlib.Path) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        if self.running:
            raise RuntimeError(f"{self.what} is already running")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        # The sandbox serves on loopback; never route it through a proxy.
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(self.command(), env=env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM), as Kubernetes stops a pod; SIGKILL if it hangs."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._close_log()

    def kill(self) -> None:
        """A crash: SIGKILL, no cleanup at all."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(5)
        self._close_log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
