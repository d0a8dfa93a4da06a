"""Run the real operator (``python -m linepool run``) as a child process against the sandbox.

Tests, the demo and the benchmark all drive the operator the way a cluster would: as its own
process, configured by ``KUBECONFIG``, stopped by signal. Nothing is patched in-process.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request
from typing import IO, Self

from linepool.sandbox.lifecycle import Service
from linepool.sandbox.prometheus import free_port


class OperatorProcess(Service):
    """One ``linepool run`` child process with its log in a file."""

    def __init__(
        self,
        *,
        kubeconfig: pathlib.Path,
        namespaces: list[str],
        log_path: pathlib.Path,
        standalone: bool = True,
        extra_args: list[str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.log_path = log_path
        self.standalone = standalone
        self.extra_args = extra_args or []
        self.metrics_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "linepool", "run", "--metrics-port", str(self.metrics_port),
                   "--metrics-address", "127.0.0.1"]
        for namespace in self.namespaces:
            command += ["--namespace", namespace]
        if self.standalone:
            command.append("--standalone")
        return command + self.extra_args

    def start(self) -> Self:
        if self.running:
            raise RuntimeError("the operator is already running")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        # The sandbox serves plain HTTP on loopback; never route it through a proxy.
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

    def metrics(self, timeout: float = 5.0) -> str:
        """The operator's own /metrics page."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return str(response.read().decode())

    def wait_metrics(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.metrics()
            except OSError:
                if time.monotonic() > deadline or not self.running:
                    raise
                time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

