"""
kopf 1.45 against the sandbox API server: the full create → status → events → finalizer cycle.

kopf runs in a thread with its own event loop (see /work/shared/TESTING.md: inside a
pytest-asyncio fixture, kopf's shutdown cancels the fixture's teardown). It uses a private
registry and settings, so nothing leaks into other tests, and logs in through an
``on.login`` handler that points it at this server.
"""
import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest

from linepool.sandbox.apiserver import ApiServerThread

GROUP, VERSION, PLURAL = 'linepool.dev', 'v1alpha1', 'linepools'


class KopfThread:
    """A kopf operator for one test: started on enter, stopped and joined on exit."""

    def __init__(self, registry: kopf.OperatorRegistry, settings: kopf.OperatorSettings) -> None:
        self.registry = registry
        self.settings = settings
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name='kopf-operator', daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(kopf.operator(
                registry=self.registry, settings=self.settings,
                standalone=True, clusterwide=True,
                stop_flag=self.stop_flag, ready_flag=self.ready_flag,
            ))
        except BaseException as e:
            self.error = e

    def __enter__(self) -> 'KopfThread':
        self.thread.start()
        assert self.ready_flag.wait(10), "kopf did not become ready"
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_flag.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "kopf did not stop"
        assert self.error is None, f"kopf failed: {self.error!r}"


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def operator(apiserver: ApiServerThread, calls: list[str]) -> Iterator[KopfThread]:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=apiserver.url, insecure=True)

    @kopf.on.create(GROUP, VERSION, PLURAL, id='created', registry=registry)
    def created(body: kopf.Body, **_: Any) -> dict[str, Any]:
        calls.append('create')
        kopf.event(body, type='Normal', reason='Provisioning', message='first')
        kopf.event(body, type='Normal', reason='Provisioning', message='second')
        return {'lines': 3}

    @kopf.on.delete(GROUP, VERSION, PLURAL, id='deleted', registry=registry)
    def deleted(**_: Any) -> None:
        calls.append('delete')

    settings = kopf.OperatorSettings()
    # Keep kopf's own "Handler succeeded" events out, so only the handler's events are posted.
    settings.posting.level = logging.WARNING
    with KopfThread(registry, settings) as operator:
        yield operator


def test_create_status_events_and_finalizers(
        apiserver: ApiServerThread, operator: KopfThread, calls: list[str],
) -> None:
    started = time.monotonic()
    apiserver.apply({
        'apiVersion': f'{GROUP}/{VERSION}', 'kind': 'LinePool',
        'metadata': {'name': 'pool-1', 'namespace': 'default'}, 'spec': {'size': 3},
    })

    # The handler's result lands in the status (via the /status subresource).
    def handled() -> dict[str, Any] | None:
        obj = apiserver.get(PLURAL, 'default', 'pool-1')
        return obj if obj is not None and 'created' in obj.get('status', {}) else None

    obj = wait_until(handled)
    assert obj['status']['created'] == {'lines': 3}
    assert obj['metadata']['finalizers'] == ['kopf.zalando.org/KopfFinalizerMarker']
    assert obj['metadata']['generation'] == 1  # kopf's writes were metadata and status only

    # Both events were posted (the second one needs generateName to work).
    events = wait_until(lambda: len(found := apiserver.list('events', 'default')) >= 2 and found)
    assert sorted(event['message'] for event in events) == ['first', 'second']
    assert {event['involvedObject']['name'] for event in events} == {'pool-1'}
    assert all(event['metadata']['name'].startswith('kopf-event-') for event in events)

    # The handler ran once, and stays done (kopf is not confused into re-running it).
    time.sleep(0.3)
    assert calls == ['create']

    # Deletion is held by kopf's finalizer until the deletion handler ran and released it.
    apiserver.delete(PLURAL, 'default', 'pool-1')
    wait_until(lambda: apiserver.get(PLURAL, 'default', 'pool-1') is None)
    assert calls == ['create', 'delete']
    assert time.monotonic() - started < 5

    # kopf wrote through the API: finalizer add + remove (JSON patches), annotations, status, events.
    assert apiserver.write_count('events', method='POST') == 2
    assert apiserver.write_count(PLURAL, subresource='status') >= 1
    assert apiserver.write_count(PLURAL, successful_only=True) == apiserver.write_count(PLURAL)
