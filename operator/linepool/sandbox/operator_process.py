"""Run the real operator (``python -m linepool run``) as a child process against the sandbox.

Tests, the demo and the benchmark all drive the operator the way a cluster would: as its own
process, configured by ``KUBECONFIG``, stopped by signal. Nothing is patched in-process.
"""

import pathlib
import sys
import time
import urllib.request

from linepool.sandbox.lifecycle import ChildProcess
from linepool.sandbox.prometheus import free_port


class OperatorProcess(ChildProcess):
    """One ``linepool run`` child process with its log in a file."""

    what = "the operator"

    def __init__(
        self,
        *,
        kubeconfig: pathlib.Path,
        namespaces: list[str],
        log_path: pathlib.Path,
        standalone: bool = True,
        extra_args: list[str] | None = None,
    ) -> None:
        super().__init__(kubeconfig=kubeconfig, log_path=log_path)
        self.namespaces = namespaces
        self.standalone = standalone
        self.extra_args = extra_args or []
        self.metrics_port = free_port()

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "linepool", "run", "--metrics-port", str(self.metrics_port),
                   "--metrics-address", "127.0.0.1"]
        for namespace in self.namespaces:
            command += ["--namespace", namespace]
        if self.standalone:
            command.append("--standalone")
        return command + self.extra_args

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
