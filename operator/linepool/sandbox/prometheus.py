"""
A real Prometheus server (Debian's ``prometheus`` 2.42) managed as a child process.

The operator reads the fleet's metrics back through Prometheus's HTTP API, so the
sandbox runs the real thing rather than a fake: the query semantics (``increase()``
extrapolation, staleness, scrape timing) are exactly what the operator must cope with.

:class:`PrometheusProcess` writes the config (``scrape_interval: 1s``, one job ``fleet``
with static targets), starts the binary on 127.0.0.1 with its TSDB in a directory it
owns, waits for ``/-/ready``, and stops it by PID. Outages can be simulated two ways:

* :meth:`PrometheusProcess.pause` / :meth:`~PrometheusProcess.resume` — SIGSTOP/SIGCONT:
  the socket still accepts connections but nothing answers (a hung server);
* :meth:`~PrometheusProcess.stop` then :meth:`~PrometheusProcess.start` — connection
  refused, then back on the same port with the same data (a restart).

:func:`backfill` writes history into a TSDB directory before Prometheus starts, via
``promtool tsdb create-blocks-from openmetrics``, for stable tests of window queries.
"""
import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, BinaryIO, Self

from linepool.sandbox.lifecycle import Service

INSTALL_HINT = "install it with: apt-get install -y --no-install-recommends prometheus"


class PrometheusNotInstalled(RuntimeError):
    pass


def find_binary(name: str) -> str:
    """The path to ``prometheus`` or ``promtool``, or a clear error saying how to install it."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path is None:
        raise PrometheusNotInstalled(f"{name!r} is not found on PATH; {INSTALL_HINT}")
    return path


def free_port(host: str = '127.0.0.1') -> int:
    """A port that was free a moment ago (there is a small race; good enough on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def render_config(
        targets: Sequence[str],
        *,
        scrape_interval: str = '1s',
        evaluation_interval: str = '1s',
        rule_files: Sequence[str | pathlib.Path] = (),
        job_name: str = 'fleet',
) -> str:
    """The Prometheus config, as JSON (a subset of YAML, so no YAML library is needed)."""
    config: dict[str, Any] = {
        'global': {'scrape_interval': scrape_interval, 'evaluation_interval': evaluation_interval},
        'scrape_configs': [{
            'job_name': job_name,
            'scrape_interval': scrape_interval,
            'scrape_timeout': scrape_interval,
            'static_configs': [{'targets': list(targets)}],
        }],
    }
    if rule_files:
        config['rule_files'] = [str(path) for path in rule_files]
    return json.dumps(config, indent=2) + '\n'


class PrometheusProcess(Service):
    """
    One Prometheus server on 127.0.0.1, in a work directory of its own.

    The port (picked once, if not given) and the storage survive :meth:`stop` and
    :meth:`start`, so a restart looks like the same server coming back. The work
    directory is removed by :meth:`close` (and on leaving the ``with`` block) only if
    this object created it.
    """

    def __init__(
            self,
            targets: Sequence[str] = (),
            *,
            port: int = 0,
            workdir: str | pathlib.Path | None = None,
            scrape_interval: str = '1s',
            evaluation_interval: str = '1s',
            rule_files: Sequence[str | pathlib.Path] = (),
            extra_args: Sequence[str] = (),
            ready_timeout: float = 20.0,
    ) -> None:
        super().__init__()
        self.targets = list(targets)
        self.port = port or free_port()
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.rule_files = list(rule_files)
        self.extra_args = list(extra_args)
        self.ready_timeout = ready_timeout
        self._owns_workdir = workdir is None
        self.workdir = pathlib.Path(workdir) if workdir is not None else pathlib.Path(
            tempfile.mkdtemp(prefix='linepool-prometheus-'))
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: BinaryIO | None = None
        self._paused = False

    # ------------------------------------------------------------------------------------------
    # Paths.

    @property
    def data_dir(self) -> pathlib.Path:
        """The TSDB directory; pass it to :func:`backfill` before the first :meth:`start`."""
        return self.workdir / 'data'

    @property
    def config_path(self) -> pathlib.Path:
        return self.workdir / 'prometheus.yml'

    @property
    def log_path(self) -> pathlib.Path:
        return self.workdir / 'prometheus.log'

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # ------------------------------------------------------------------------------------------
    # Lifecycle.

    def start(self) -> Self:
        """Start the server and wait until ``/-/ready`` answers 200."""
        if self.running:
            raise RuntimeError("Prometheus is already running")
        binary = find_binary('prometheus')
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._render_config(), encoding='utf-8')
        # Logs go to a file, not a pipe: nobody reads a pipe, and a full pipe blocks the child.
        self._log_file = open(self.log_path, 'ab')  # noqa: SIM115  # it lives as long as the process
        self._process = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # Allows config reloads over HTTP (see set_targets) without signals.
                '--web.enable-lifecycle',
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        self._paused = False
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after ``timeout``). Idempotent; keeps the data."""
        process = self._process
        if process is not None:
            if process.poll() is None:
                process.terminate()
                if self._paused:
                    os.kill(process.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout)
            self._process = None
            self._paused = False
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def close(self) -> None:
        """Stop and remove the work directory, if this object created it."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections hang instead of being refused."""
        if not self.running or self._process is None:
            raise RuntimeError("Prometheus is not running")
        os.kill(self._process.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Unfreeze the process (SIGCONT) after :meth:`pause`."""
        if self._process is not None and self._paused:
            os.kill(self._process.pid, signal.SIGCONT)
            self._paused = False


    # ------------------------------------------------------------------------------------------
    # Runtime changes and queries.

    def set_targets(self, targets: Sequence[str]) -> None:
        """Replace the scrape targets; a running server reloads its config at once."""
        self.targets = list(targets)
        self.config_path.write_text(self._render_config(), encoding='utf-8')
        if self.running:
            request = urllib.request.Request(f"{self.url}/-/reload", method='POST')
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()

    def query(self, promql: str, *, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Run an instant query; returns ``data.result`` (values are strings, as Prometheus sends them)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = json.load(response)
        if payload.get('status') != 'success':
            raise RuntimeError(f"query {promql!r} failed: {payload}")
        result: list[dict[str, Any]] = payload['data']['result']
        return result

    def wait_for_series(self, promql: str, *, timeout: float = 15.0, interval: float = 0.25) -> list[dict[str, Any]]:
        """
        Poll until the query returns something; the first scrape lands only after ~6 s.

        Raises ``TimeoutError`` (with the log's tail) if nothing appears in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(urllib.error.URLError, TimeoutError, ConnectionError):
                result = self.query(promql)
                if result:
                    return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no series for {promql!r} within {timeout}s\n{self._log_tail()}")
            time.sleep(interval)

    # ------------------------------------------------------------------------------------------
    # Internals.

    def _render_config(self) -> str:
        return render_config(
            self.targets, scrape_interval=self.scrape_interval,
            evaluation_interval=self.evaluation_interval, rule_files=self.rule_files)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process is not None else None
                raise RuntimeError(f"Prometheus exited during startup (code {code})\n{self._log_tail()}")
            with (contextlib.suppress(urllib.error.URLError, TimeoutError, ConnectionError),
                  urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response):
                if response.status == 200:
                    return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Prometheus was not ready within {self.ready_timeout}s\n{self._log_tail()}")
            time.sleep(0.1)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding='utf-8', errors='replace')
        except OSError:
            return "(no log)"
        return '\n'.join(text.splitlines()[-lines:])


def backfill(openmetrics_text: str, data_dir: str | pathlib.Path, *, timeout: float = 60.0) -> None:
    """
    Write samples into a TSDB directory with ``promtool tsdb create-blocks-from openmetrics``.

    Call it before Prometheus starts on ``data_dir``. The samples need timestamps (in
    seconds) and the same ``job``/``instance`` labels that the scrape will add, or the
    queries will see two different series. A missing ``# EOF`` terminator is added.
    Note that promtool writes 2-hour blocks, and samples newer than the head of a
    running server's TSDB may be ignored by it — backfill history, not the present.
    """
    promtool = find_binary('promtool')
    data_dir = pathlib.Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    text = openmetrics_text if openmetrics_text.rstrip().endswith('# EOF') else openmetrics_text.rstrip() + '\n# EOF\n'
    with tempfile.NamedTemporaryFile('w', suffix='.om', encoding='utf-8', delete=False) as file:
        file.write(text)
        source = file.name
    try:
        completed = subprocess.run(
            [promtool, 'tsdb', 'create-blocks-from', 'openmetrics', source, str(data_dir)],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    finally:
        os.unlink(source)
    if completed.returncode != 0:
        raise RuntimeError(f"promtool backfill failed ({completed.returncode}): "
                           f"{completed.stderr.strip() or completed.stdout.strip()}")
