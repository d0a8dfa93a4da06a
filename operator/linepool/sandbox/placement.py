"""Run the real placement service (``python -m linepool serve``) as a child process.

Tests, the demo and the benchmark call it over real HTTP on loopback, as an app would, and stop
it by signal; ``kill`` is the SIGKILL of the durability tests.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import IO, Any, Self

from linepool.sandbox.lifecycle import Service
from linepool.sandbox.prometheus import free_port


class PlacementProcess(Service):
    """One ``linepool serve`` child process with its log in a file."""

    def __init__(
        self,
        *,
        kubeconfig: pathlib.Path,
        database: str,
        log_path: pathlib.Path,
        token_file: pathlib.Path | None = None,
        namespaces: list[str] | None = None,
        port: int | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.database = database
        self.log_path = log_path
        self.token_file = token_file
        self.namespaces = namespaces or []
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "linepool", "serve", "--listen", f"127.0.0.1:{self.port}",
                   "--database", self.database, "--log-format", "plain"]
        if self.token_file is not None:
            command += ["--token-file", str(self.token_file)]
        for namespace in self.namespaces:
            command += ["--namespace", namespace]
        return command + self.extra_args

    def start(self) -> Self:
        if self.running:
            raise RuntimeError("the placement service is already running")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(self.command(), env=env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until ``/readyz`` answers 200: pools listed, store open."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"the placement service exited:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = exc.read().decode(errors="replace")
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"the placement service is not ready after {timeout}s: {last}\n{self.log()[-3000:]}")

    def request(self, method: str, path: str, *, body: Any = None, token: str | None = None,
                headers: dict[str, str] | None = None, raw: bytes | None = None,
                timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
        """One HTTP request: (status, headers, parsed JSON or text). Never raises for a 4xx/5xx."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, dict(response.headers), _decode(response.read(), response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), _decode(exc.read(), exc.headers)

    def stop(self, timeout: float = 15.0) -> None:
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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Show a redirect as it is: the short link's answer is the redirect itself."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _decode(data: bytes, headers: Any) -> Any:
    if "json" in (headers.get("Content-Type") or ""):
        return json.loads(data)
    return data.decode(errors="replace")
