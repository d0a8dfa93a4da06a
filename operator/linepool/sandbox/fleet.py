"""
A simulated fleet of messaging servers, and a stub of one server's HTTP API.

:class:`Fleet` stands in for the real fleet's exporters. It serves the metrics contract
that the operator reads back through Prometheus, on a real ``/metrics`` endpoint:

* ``imessage_messages_sent_total{server, line}`` — counter;
* ``imessage_messages_received_total{server, line}`` — counter;
* ``imessage_new_conversations_total{server, line, initiator}`` — counter; ``initiator`` is
  ``line`` when the line wrote first and ``recipient`` when the recipient did. A server added
  with ``initiator_label=False`` exports it without that label, as an older relay does;
* ``imessage_unanswered_sends_total{server, line, streak}`` — counter of sends by how many
  messages in a row (this one included) went to the recipient without a reply: ``1`` … ``4``,
  ``5+``. A server added with ``unanswered_metric=False`` does not export it;
* ``imessage_line_state{server, line, state}`` — gauge: 1 for the line's current state
  among ``active``, ``flagged``, ``deactivated``, and 0 for the other two.

The numbers are kept in plain dicts and exposed by a custom collector on a private
``CollectorRegistry``, rather than with ``prometheus_client.Counter``: removing a server
must remove its series, several fleets may live in one process, and no ``*_created``
series should clutter the contract. Every series is exported at zero from the moment its line
exists: ``increase()`` ignores what a counter already held at its first scraped sample.

:class:`RelayStub` stands in for a messaging server's send API (``POST /v1/messages``):
it records what it receives and fails on demand, for tests of the delivery path.
"""
import dataclasses
import http.server
import json
import math
import random
import socketserver
import threading
import time
import uuid
import wsgiref.simple_server
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Literal, Self

import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from linepool.sandbox.lifecycle import Service

LineState = Literal['active', 'flagged', 'deactivated']
LINE_STATES: Final[tuple[LineState, ...]] = ('active', 'flagged', 'deactivated')

Initiator = Literal['line', 'recipient']
INITIATORS: Final[tuple[Initiator, ...]] = ('line', 'recipient')
# The values of the `streak` label: a streak of 5 or more is exported as "5+".
STREAKS: Final[tuple[str, ...]] = ('1', '2', '3', '4', '5+')

# A traffic profile: seconds since the traffic started -> messages per second per server.
TrafficProfile = Callable[[float], float]


@dataclasses.dataclass(frozen=True)
class _Exports:
    """Which optional parts of the metrics contract a server's relay exports."""
    initiator_label: bool = True
    unanswered_metric: bool = True


@dataclasses.dataclass
class _Line:
    state: LineState = 'active'
    sent: float = 0
    received: float = 0
    # New conversations by who wrote first (see INITIATORS).
    new_conversations: dict[str, float] = dataclasses.field(default_factory=lambda: dict.fromkeys(INITIATORS, 0.0))
    # Sends by unanswered streak (see STREAKS).
    unanswered: dict[str, float] = dataclasses.field(default_factory=lambda: dict.fromkeys(STREAKS, 0.0))
    # Unix seconds of the last traffic, exported only once set (the gauge is optional).
    last_activity: float | None = None


class Fleet(Service):
    """
    Simulated messaging servers with their lines, exporting the metrics contract over HTTP.

    All methods are thread-safe. Unknown servers or lines raise ``KeyError``: a typo in a
    test should fail loudly rather than silently export a series nobody expects.
    """

    def __init__(self, port: int = 0, *, host: str = '127.0.0.1') -> None:
        super().__init__()
        self.host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._servers: dict[str, dict[str, _Line]] = {}
        self._exports: dict[str, _Exports] = {}
        self.registry = prometheus_client.CollectorRegistry(auto_describe=False)
        self.registry.register(_FleetCollector(self))
        self._http: wsgiref.simple_server.WSGIServer | None = None
        self._http_thread: threading.Thread | None = None
        self._traffic_threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    # ------------------------------------------------------------------------------------------
    # Lifecycle.

    def start(self) -> Self:
        if self._http is not None:
            raise RuntimeError("the fleet exporter is already started")
        self._stopped.clear()
        # Like prometheus_client.start_http_server(), but with a short poll interval:
        # its stock one makes every stop() take half a second, which adds up in tests.
        app = prometheus_client.make_wsgi_app(self.registry)
        server = wsgiref.simple_server.make_server(
            self.host, self._requested_port, app, _ThreadingWSGIServer, handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05},
                                  name='fleet-exporter', daemon=True)
        thread.start()
        self._http, self._http_thread = server, thread
        return self

    def stop(self) -> None:
        """Stop the traffic drivers and the ``/metrics`` endpoint. Idempotent."""
        self._stopped.set()
        for thread in self._traffic_threads:
            thread.join(5)
        self._traffic_threads.clear()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(5)
            self._http_thread = None


    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError("the fleet exporter is not started")
        return int(self._http.server_port)

    @property
    def target(self) -> str:
        """The scrape target for Prometheus: ``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The full URL of the metrics endpoint."""
        return f"http://{self.target}/metrics"

    # ------------------------------------------------------------------------------------------
    # The fleet's shape.

    def add_server(
            self,
            name: str,
            lines: list[str],
            *,
            initiator_label: bool | None = None,
            unanswered_metric: bool | None = None,
    ) -> None:
        """
        Add a server with its lines (all ``active``), or add lines to an existing server.

        ``initiator_label=False`` exports ``imessage_new_conversations_total`` without its
        ``initiator`` label and ``unanswered_metric=False`` leaves out
        ``imessage_unanswered_sends_total``: a relay that predates those parts of the contract.
        Both default to True for a new server; left out, they keep what an existing server has.
        """
        with self._lock:
            server = self._servers.setdefault(name, {})
            current = self._exports.get(name, _Exports())
            self._exports[name] = _Exports(
                initiator_label=current.initiator_label if initiator_label is None else initiator_label,
                unanswered_metric=current.unanswered_metric if unanswered_metric is None else unanswered_metric,
            )
            for line in lines:
                server.setdefault(line, _Line())

    def remove_server(self, name: str) -> None:
        """Remove a server; its series disappear from ``/metrics``, as when an exporter goes away."""
        with self._lock:
            del self._servers[name]
            del self._exports[name]

    def servers(self) -> dict[str, list[str]]:
        with self._lock:
            return {name: list(lines) for name, lines in self._servers.items()}

    # ------------------------------------------------------------------------------------------
    # Activity.

    def send(self, server: str, line: str, n: int = 1) -> None:
        with self._lock:
            record = self._line(server, line)
            record.sent += n
            _touch(record)

    def receive(self, server: str, line: str, n: int = 1) -> None:
        with self._lock:
            record = self._line(server, line)
            record.received += n
            _touch(record)

    def new_conversations(self, server: str, line: str, n: int = 1, *, initiator: Initiator = 'recipient') -> None:
        """Count ``n`` new conversations; ``initiator='line'`` when the line wrote first (cold outreach)."""
        if initiator not in INITIATORS:
            raise ValueError(f"unknown initiator {initiator!r}; expected one of {INITIATORS}")
        with self._lock:
            self._line(server, line).new_conversations[initiator] += n

    def unanswered(self, server: str, line: str, *, streak: int, n: int = 1) -> None:
        """
        Count ``n`` sends that were the ``streak``-th message in a row to a recipient without a reply.

        Only ``imessage_unanswered_sends_total`` moves: call :meth:`send` too for the sent
        counter, so that a test can set each figure on its own.
        """
        if streak < 1:
            raise ValueError(f"a streak counts the send itself, so it is at least 1, not {streak}")
        with self._lock:
            self._line(server, line).unanswered[STREAKS[min(streak, len(STREAKS)) - 1]] += n

    def set_line_state(self, server: str, line: str, state: LineState) -> None:
        if state not in LINE_STATES:
            raise ValueError(f"unknown line state {state!r}; expected one of {LINE_STATES}")
        with self._lock:
            self._line(server, line).state = state

    def set_last_activity(self, server: str, line: str, timestamp: float) -> None:
        """Export ``imessage_line_last_activity_timestamp_seconds`` for a line (e.g. weeks ago)."""
        with self._lock:
            self._line(server, line).last_activity = timestamp

    def line_state(self, server: str, line: str) -> LineState:
        with self._lock:
            return self._line(server, line).state

    def totals(self, server: str, line: str) -> dict[str, int]:
        """The counters of one line, as the exporter shows them (``unanswered`` summed over streaks)."""
        with self._lock:
            record = self._line(server, line)
            return {
                'sent': int(record.sent),
                'received': int(record.received),
                'new_conversations': int(sum(record.new_conversations.values())),
                'line_initiated': int(record.new_conversations['line']),
                'unanswered': int(sum(record.unanswered.values())),
            }

    def run_traffic(
            self,
            profile: TrafficProfile,
            *,
            stop_event: threading.Event,
            tick: float = 0.5,
            reply_ratio: float = 0.8,
            new_conversation_ratio: float = 0.1,
            seed: int | None = None,
    ) -> threading.Thread:
        """
        Drive traffic in a background thread until ``stop_event`` (or :meth:`stop`); returns the thread.

        Every ``tick``, each server sends ``profile(elapsed) * tick`` messages, spread at
        random over its ``active`` lines (flagged and deactivated lines send nothing);
        replies and new conversations follow as fractions of that. Fractions of a message
        carry over to the next tick, so low rates are exact on average. The traffic is a
        healthy exchange: new conversations are started by the recipient, and every send
        counts at streak 1.
        """
        rng = random.Random(seed)

        def drive() -> None:
            started = time.monotonic()
            carry: dict[str, float] = {}
            while not stop_event.is_set() and not self._stopped.is_set():
                rate = max(0.0, profile(time.monotonic() - started))
                with self._lock:
                    for name, lines in self._servers.items():
                        active = [line for line in lines.values() if line.state == 'active']
                        if not active:
                            continue
                        due = carry.get(name, 0.0) + rate * tick
                        whole = math.floor(due)
                        carry[name] = due - whole
                        for _ in range(whole):
                            line = rng.choice(active)
                            line.sent += 1
                            line.unanswered['1'] += 1
                            if rng.random() < reply_ratio:
                                line.received += 1
                            if rng.random() < new_conversation_ratio:
                                line.new_conversations['recipient'] += 1
                # Wake up promptly on either event rather than sleeping through a stop.
                if stop_event.wait(tick) or self._stopped.is_set():
                    break

        thread = threading.Thread(target=drive, name='fleet-traffic', daemon=True)
        self._traffic_threads.append(thread)
        thread.start()
        return thread

    # ------------------------------------------------------------------------------------------
    # Internals.

    def _line(self, server: str, line: str) -> _Line:
        try:
            lines = self._servers[server]
        except KeyError:
            raise KeyError(f"unknown server {server!r}; add it with add_server()") from None
        try:
            return lines[line]
        except KeyError:
            raise KeyError(f"unknown line {line!r} on server {server!r}") from None

    def _snapshot(self) -> list[tuple[str, _Exports, str, _Line]]:
        with self._lock:
            return [
                (server, self._exports[server], name,
                 dataclasses.replace(line, new_conversations=dict(line.new_conversations),
                                     unanswered=dict(line.unanswered)))
                for server, lines in self._servers.items()
                for name, line in lines.items()
            ]


def _touch(record: _Line) -> None:
    # A line that exports its last-activity gauge keeps it current, as a real relay would.
    if record.last_activity is not None:
        record.last_activity = time.time()


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True  # a scrape in progress must not keep the process alive


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape per second is noise


class _FleetCollector(Collector):
    """Renders the fleet's current numbers at scrape time."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__()
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        snapshot = self._fleet._snapshot()
        labels = ['server', 'line']
        sent = CounterMetricFamily('imessage_messages_sent', "Messages sent by a line.", labels=labels)
        received = CounterMetricFamily('imessage_messages_received', "Messages received by a line.",
                                       labels=labels)
        # Label sets differ by server (with or without `initiator`), so samples are added as they are:
        # a family's add_metric() takes one fixed list of label names.
        new = CounterMetricFamily('imessage_new_conversations', "Conversations started on a line.")
        unanswered = CounterMetricFamily(
            'imessage_unanswered_sends',
            "Messages sent, by how many in a row (this one included) went to the recipient without a reply.",
            labels=[*labels, 'streak'])
        state = GaugeMetricFamily('imessage_line_state', "1 for the line's current state, 0 for the others.",
                                  labels=['server', 'line', 'state'])
        last = GaugeMetricFamily('imessage_line_last_activity_timestamp_seconds',
                                 "Unix time of the line's last inbound or outbound message.", labels=labels)
        for server, exports, line, record in snapshot:
            if record.last_activity is not None:
                last.add_metric([server, line], record.last_activity)
            sent.add_metric([server, line], record.sent)
            received.add_metric([server, line], record.received)
            if exports.initiator_label:
                for initiator, count in record.new_conversations.items():
                    new.samples.append(Sample('imessage_new_conversations_total',
                                              {'server': server, 'line': line, 'initiator': initiator}, count))
            else:
                new.samples.append(Sample('imessage_new_conversations_total', {'server': server, 'line': line},
                                          sum(record.new_conversations.values())))
            if exports.unanswered_metric:
                for streak, count in record.unanswered.items():
                    unanswered.add_metric([server, line, streak], count)
            for candidate in LINE_STATES:
                state.add_metric([server, line, candidate], 1.0 if record.state == candidate else 0.0)
        yield from (sent, received, new, state, last, unanswered)


def linear_ramp(*, start: float = 0.5, peak: float = 5.0, ramp_seconds: float = 180.0) -> TrafficProfile:
    """A profile that grows linearly from ``start`` to ``peak`` messages/s/server, then stays."""
    def profile(elapsed: float) -> float:
        if elapsed >= ramp_seconds:
            return peak
        return start + (peak - start) * max(0.0, elapsed) / ramp_seconds
    return profile


# ------------------------------------------------------------------------------------------------
# The messaging-server stub.

@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request to the stub, and what the stub answered (``None`` while it is in flight)."""
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text if it was not JSON
    status: int | None
    received_at: float


@dataclasses.dataclass
class _Fault:
    remaining: int
    status: int | None  # None: answer normally, but after the delay
    delay: float
    retry_after: float | None


class RelayStub(Service):
    """
    A messaging server's HTTP API on 127.0.0.1: ``POST /v1/messages`` records and accepts.

    Faults are queued and consumed in order, one request each::

        stub.fail_next(2, status=429, retry_after=1)   # the next 2 requests get 429
        stub.fail_next(1, status=500)                  # then 1 gets 500
        stub.delay_next(1, seconds=2.0)                # then 1 is answered normally, but late

    A successful send answers ``202 Accepted`` with ``{"id": ..., "status": "queued"}``. Like a
    real messaging API it is idempotent: a request repeating an accepted ``idempotencyKey``
    answers ``409`` and sends nothing. With ``token`` set, a request without
    ``Authorization: Bearer <token>`` answers ``401``.
    ``GET /healthz`` answers 200. Everything else is 404. All requests are recorded.
    """

    def __init__(self, port: int = 0, *, host: str = '127.0.0.1', token: str | None = None) -> None:
        super().__init__()
        self.host = host
        self.token = token
        self._accepted_keys: set[str] = set()
        self._requested_port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._arrived = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                stub._handle(self)

            def do_GET(self) -> None:
                stub._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean; the records are the log

        server = http.server.ThreadingHTTPServer((self.host, self._requested_port), Handler)
        server.daemon_threads = True
        self._server = server
        self._closing.clear()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05},
                                        name='relay-stub', daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed answers are cut short. Idempotent."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the relay stub is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # Fault injection.

    def fail_next(self, n: int = 1, *, status: int = 500, retry_after: float | None = None) -> None:
        """Answer the next ``n`` message requests with ``status`` (e.g. 429, 500, 409)."""
        with self._lock:
            self._faults.append(_Fault(n, status, 0.0, retry_after))

    def delay_next(self, n: int = 1, *, seconds: float, status: int | None = None) -> None:
        """Hold the next ``n`` message requests for ``seconds`` before answering (normally by default)."""
        with self._lock:
            self._faults.append(_Fault(n, status, seconds, None))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # Inspection.

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[Any]:
        """The JSON bodies of the accepted (2xx) message requests."""
        return [r.body for r in self.requests
                if r.path == '/v1/messages' and r.status is not None and 200 <= r.status < 300]

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``n`` requests were recorded; raises ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._requests) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self._requests)} of {n} requests arrived within {timeout}s")
                self._arrived.wait(remaining)
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._accepted_keys.clear()

    # Internals.

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get('Content-Length') or 0)
        raw = handler.rfile.read(length) if length else b''
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode('utf-8', errors='replace')
        headers = {key: value for key, value in handler.headers.items()}
        path = handler.path.split('?', 1)[0]

        # Record on arrival, so that tests can see requests that are still being delayed.
        recorded = RecordedRequest(method=handler.command, path=path, headers=headers, body=body,
                                   status=None, received_at=time.time())
        with self._arrived:
            self._requests.append(recorded)
            self._arrived.notify_all()

        status, payload, extra_headers = 404, {'error': 'not found'}, {}
        if handler.command == 'GET' and path == '/healthz':
            status, payload = 200, {'status': 'ok'}
        elif handler.command == 'POST' and path == '/v1/messages':
            fault = self._take_fault()
            key = body.get('idempotencyKey') if isinstance(body, dict) else None
            authorized = self.token is None or headers.get('Authorization') == f"Bearer {self.token}"
            duplicate = False
            if authorized and (fault is None or fault.status is None) and key is not None:
                # A real API commits the key when the request arrives, not when it answers.
                with self._lock:
                    duplicate = str(key) in self._accepted_keys
                    self._accepted_keys.add(str(key))
            if fault is not None and fault.delay > 0:
                self._closing.wait(fault.delay)  # interruptible, so stop() is never held up
            if fault is not None and fault.status is not None:
                status, payload = fault.status, {'error': _REASONS.get(fault.status, 'injected failure')}
                if fault.retry_after is not None:
                    extra_headers['Retry-After'] = f"{fault.retry_after:g}"
            elif not authorized:
                status, payload = 401, {'error': 'unauthorized'}
            elif duplicate:
                status, payload = 409, {'error': _REASONS[409]}
            else:
                status, payload = 202, {'id': str(uuid.uuid4()), 'status': 'queued'}

        with self._lock:
            for index in range(len(self._requests) - 1, -1, -1):
                if self._requests[index] is recorded:  # unless reset() dropped it meanwhile
                    self._requests[index] = dataclasses.replace(recorded, status=status)
                    break

        data = json.dumps(payload).encode('utf-8')
        try:
            handler.send_response(status)
            handler.send_header('Content-Type', 'application/json')
            handler.send_header('Content-Length', str(len(data)))
            for key, value in extra_headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout was shorter than our delay)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            while self._faults and self._faults[0].remaining <= 0:
                self._faults.pop(0)
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            return dataclasses.replace(fault)


_REASONS: Final[Mapping[int, str]] = {
    409: 'conflict: duplicate message',
    429: 'rate limited',
    500: 'internal server error',
    503: 'service unavailable',
}
