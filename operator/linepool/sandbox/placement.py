"""Run the real placement service (``python -m linepool serve``) as a child process.

Tests, the demo and the benchmark call it over real HTTP on loopback, as an app would, and stop
it by signal; ``kill`` is the SIGKILL of the durability tests.
"""

import json
import pathlib
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from linepool.sandbox.lifecycle import ChildProcess
from linepool.sandbox.prometheus import free_port


class PlacementProcess(ChildProcess):
    """One ``linepool serve`` child process with its log in a file."""

    what = "the placement service"

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
        super().__init__(kubeconfig=kubeconfig, log_path=log_path)
        self.database = database
        self.token_file = token_file
        self.namespaces = namespaces or []
        self.port = port or free_port()
        self.extra_args = extra_args or []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "linepool", "serve", "--listen", f"127.0.0.1:{self.port}",
                   "--database", self.database, "--log-format", "plain"]
        if self.token_file is not None:
            command += ["--token-file", str(self.token_file)]
        for namespace in self.namespaces:
            command += ["--namespace", namespace]
        return command + self.extra_args

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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Show a redirect as it is: the short link's answer is the redirect itself."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _decode(data: bytes, headers: Any) -> Any:
    if "json" in (headers.get("Content-Type") or ""):
        return json.loads(data)
    return data.decode(errors="replace")
