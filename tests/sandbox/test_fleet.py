"""The fleet's /metrics contract and traffic driver, and the messaging-server stub."""
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from linepool.sandbox.fleet import Fleet, RelayStub, linear_ramp


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet() as fleet:
        yield fleet


def scrape(fleet: Fleet) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(fleet.url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_contract(fleet: Fleet) -> None:
    fleet.add_server('srv-1', ['l1', 'l2'])
    fleet.send('srv-1', 'l1', n=3)
    fleet.receive('srv-1', 'l1', n=2)
    fleet.new_conversations('srv-1', 'l1')
    fleet.set_line_state('srv-1', 'l2', 'flagged')

    samples = scrape(fleet)
    l1 = (('line', 'l1'), ('server', 'srv-1'))
    assert samples['imessage_messages_sent_total', l1] == 3
    assert samples['imessage_messages_received_total', l1] == 2
    # The inbound-first flow by default; both initiators are exported, the other one at zero.
    assert samples['imessage_new_conversations_total', (('initiator', 'recipient'), *l1)] == 1
    assert samples['imessage_new_conversations_total', (('initiator', 'line'), *l1)] == 0
    assert samples['imessage_messages_sent_total', (('line', 'l2'), ('server', 'srv-1'))] == 0
    states = {labels: value for (name, labels), value in samples.items() if name == 'imessage_line_state'}
    assert states == {
        (('line', 'l1'), ('server', 'srv-1'), ('state', 'active')): 1,
        (('line', 'l1'), ('server', 'srv-1'), ('state', 'flagged')): 0,
        (('line', 'l1'), ('server', 'srv-1'), ('state', 'deactivated')): 0,
        (('line', 'l2'), ('server', 'srv-1'), ('state', 'active')): 0,
        (('line', 'l2'), ('server', 'srv-1'), ('state', 'flagged')): 1,
        (('line', 'l2'), ('server', 'srv-1'), ('state', 'deactivated')): 0,
    }
    assert not any(name.endswith('_created') for name, _ in samples)


def test_removed_servers_disappear(fleet: Fleet) -> None:
    fleet.add_server('srv-1', ['l1'])
    fleet.add_server('srv-2', ['l1'])
    fleet.remove_server('srv-1')
    servers = {dict(labels)['server'] for _, labels in scrape(fleet)}
    assert servers == {'srv-2'}


def test_unknown_servers_lines_and_states_fail_loudly(fleet: Fleet) -> None:
    fleet.add_server('srv-1', ['l1'])
    with pytest.raises(KeyError):
        fleet.send('srv-9', 'l1')
    with pytest.raises(KeyError):
        fleet.send('srv-1', 'l9')
    with pytest.raises(ValueError):
        fleet.set_line_state('srv-1', 'l1', 'banned')  # type: ignore[arg-type]


def test_traffic_follows_the_profile_on_active_lines_only(fleet: Fleet) -> None:
    fleet.add_server('srv-1', ['l1', 'l2'])
    fleet.set_line_state('srv-1', 'l2', 'deactivated')
    stop = threading.Event()
    thread = fleet.run_traffic(lambda elapsed: 100.0, stop_event=stop, tick=0.05, seed=1)
    time.sleep(0.5)
    stop.set()
    thread.join(2)
    assert not thread.is_alive()
    sent = fleet.totals('srv-1', 'l1')['sent']
    assert 30 <= sent <= 70  # ~100/s for ~0.5 s, give or take the thread's scheduling
    assert fleet.totals('srv-1', 'l2')['sent'] == 0
    assert 0 < fleet.totals('srv-1', 'l1')['received'] <= sent


def test_linear_ramp() -> None:
    profile = linear_ramp(start=1, peak=5, ramp_seconds=100)
    assert profile(0) == 1
    assert profile(50) == 3
    assert profile(1000) == 5


@pytest.fixture
def relay() -> Iterator[RelayStub]:
    with RelayStub() as relay:
        yield relay


def post(relay: RelayStub, body: dict[str, Any], timeout: float = 5) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        f"{relay.url}/v1/messages", data=json.dumps(body).encode(), method='POST',
        headers={'Content-Type': 'application/json', 'Idempotency-Key': 'k1'})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.load(e)


def test_relay_stub_records_and_accepts(relay: RelayStub) -> None:
    status, _, body = post(relay, {'to': '+100', 'text': 'hi'})
    assert status == 202 and body['status'] == 'queued'
    (recorded,) = relay.requests
    assert recorded.body == {'to': '+100', 'text': 'hi'}
    assert recorded.headers['Idempotency-Key'] == 'k1'
    assert relay.messages == [{'to': '+100', 'text': 'hi'}]


def test_relay_stub_fails_on_demand_in_order(relay: RelayStub) -> None:
    relay.fail_next(2, status=429, retry_after=1)
    relay.fail_next(1, status=500)
    relay.fail_next(1, status=409)
    results = [post(relay, {'n': n}) for n in range(5)]
    assert [status for status, _, _ in results] == [429, 429, 500, 409, 202]
    assert results[0][1]['Retry-After'] == '1'
    assert relay.messages == [{'n': 4}]
    assert len(relay.requests) == 5


def test_relay_stub_delays_on_demand(relay: RelayStub) -> None:
    relay.delay_next(1, seconds=0.3)
    started = time.monotonic()
    assert post(relay, {'n': 1})[0] == 202
    assert time.monotonic() - started >= 0.3
    relay.delay_next(1, seconds=5)
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        post(relay, {'n': 2}, timeout=0.2)
    # The request still in flight is already recorded, without an answer yet.
    in_flight = relay.wait_for_requests(2, timeout=1)[-1]
    assert in_flight.body == {'n': 2} and in_flight.status is None
