"""The fleet's line-health metrics: the `initiator` label and the unanswered-sends counter.

The scrape tests read the fleet's own /metrics; the last test checks, through a real Prometheus,
that every new series is first seen at zero (``increase()`` ignores what a counter held at its
first sample) and that sums over `initiator` are what the unlabelled counter said before.
"""
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from linepool.sandbox.fleet import STREAKS, Fleet
from linepool.sandbox.prometheus import PrometheusProcess

Labels = tuple[tuple[str, str], ...]


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet() as fleet:
        yield fleet


def scrape(fleet: Fleet, name: str) -> dict[Labels, float]:
    """One metric's samples, by their sorted labels."""
    with urllib.request.urlopen(fleet.url, timeout=5) as response:
        text = response.read().decode()
    return {tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name}


def labels(**values: str) -> Labels:
    return tuple(sorted(values.items()))


def test_new_lines_export_every_initiator_and_streak_at_zero(fleet: Fleet) -> None:
    fleet.add_server('srv-1', ['l1'])
    assert scrape(fleet, 'imessage_new_conversations_total') == {
        labels(server='srv-1', line='l1', initiator='line'): 0,
        labels(server='srv-1', line='l1', initiator='recipient'): 0,
    }
    assert scrape(fleet, 'imessage_unanswered_sends_total') == {
        labels(server='srv-1', line='l1', streak=streak): 0 for streak in ('1', '2', '3', '4', '5+')}
    assert STREAKS == ('1', '2', '3', '4', '5+')


def test_initiator_defaults_to_the_recipient_so_existing_callers_keep_working(fleet: Fleet) -> None:
    fleet.add_server('srv-1', ['l1'])
    fleet.new_conversations('srv-1', 'l1', 2)                 # the call every caller made before
    fleet.new_conversations('srv-1', 'l1')
    fleet.new_conversations('srv-1', 'l1', 4, initiator='line')
    assert scrape(fleet, 'imessage_new_conversations_total') == {
        labels(server='srv-1', line='l1', initiator='line'): 4,
        labels(server='srv-1', line='l1', initiator='recipient'): 3,
    }
    assert fleet.totals('srv-1', 'l1') == {
        'sent': 0, 'received': 0, 'new_conversations': 7, 'line_initiated': 4, 'unanswered': 0}


def test_unanswered_sends_count_by_streak_with_five_and_more_together(fleet: Fleet) -> None:
    fleet.add_server('srv-1', ['l1'])
    fleet.unanswered('srv-1', 'l1', streak=1, n=6)
    fleet.unanswered('srv-1', 'l1', streak=4)
    fleet.unanswered('srv-1', 'l1', streak=5, n=2)
    fleet.unanswered('srv-1', 'l1', streak=12, n=3)
    by_streak = {dict(key)['streak']: value for key, value in scrape(fleet, 'imessage_unanswered_sends_total').items()}
    assert by_streak == {'1': 6, '2': 0, '3': 0, '4': 1, '5+': 5}
    # The counter stands on its own: the sent counter moves only with send().
    assert fleet.totals('srv-1', 'l1')['sent'] == 0
    assert fleet.totals('srv-1', 'l1')['unanswered'] == 12


def test_an_older_relay_exports_neither_addition(fleet: Fleet) -> None:
    fleet.add_server('old', ['l1'], initiator_label=False, unanswered_metric=False)
    fleet.add_server('new', ['l1'])
    fleet.new_conversations('old', 'l1', 2, initiator='line')
    fleet.new_conversations('old', 'l1')
    fleet.unanswered('old', 'l1', streak=3)  # counted, but not exported, as such a relay would
    assert scrape(fleet, 'imessage_new_conversations_total') == {
        labels(server='old', line='l1'): 3,
        labels(server='new', line='l1', initiator='line'): 0,
        labels(server='new', line='l1', initiator='recipient'): 0,
    }
    assert {dict(key)['server'] for key in scrape(fleet, 'imessage_unanswered_sends_total')} == {'new'}


def test_adding_lines_keeps_what_the_server_exports(fleet: Fleet) -> None:
    fleet.add_server('old', ['l1'], initiator_label=False)
    fleet.add_server('old', ['l2'])
    assert set(scrape(fleet, 'imessage_new_conversations_total')) == {
        labels(server='old', line='l1'), labels(server='old', line='l2')}
    fleet.add_server('old', [], initiator_label=True)  # an upgraded relay
    assert len(scrape(fleet, 'imessage_new_conversations_total')) == 4


def test_removing_a_server_removes_its_new_series(fleet: Fleet) -> None:
    fleet.add_server('srv-1', ['l1'])
    fleet.add_server('srv-2', ['l1'], initiator_label=False)
    fleet.remove_server('srv-2')
    for name in ('imessage_new_conversations_total', 'imessage_unanswered_sends_total'):
        assert {dict(key)['server'] for key in scrape(fleet, name)} == {'srv-1'}


def test_bad_initiators_and_streaks_fail_loudly(fleet: Fleet) -> None:
    fleet.add_server('srv-1', ['l1'])
    with pytest.raises(ValueError, match='initiator'):
        fleet.new_conversations('srv-1', 'l1', initiator='user')  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='at least 1'):
        fleet.unanswered('srv-1', 'l1', streak=0)
    with pytest.raises(KeyError):
        fleet.unanswered('srv-9', 'l1', streak=1)


def test_driven_traffic_is_a_healthy_exchange(fleet: Fleet) -> None:
    fleet.add_server('srv-1', ['l1'])
    stop = threading.Event()
    thread = fleet.run_traffic(lambda elapsed: 200.0, stop_event=stop, tick=0.05, seed=3,
                               new_conversation_ratio=0.5)
    time.sleep(0.3)
    stop.set()
    thread.join(2)
    totals = fleet.totals('srv-1', 'l1')
    assert totals['sent'] > 0 and totals['new_conversations'] > 0
    # Every send is a first message at streak 1, every conversation started by its recipient.
    assert totals['unanswered'] == totals['sent']
    assert totals['line_initiated'] == 0


@pytest.mark.integration
def test_prometheus_sees_every_new_series_start_at_zero(fleet: Fleet) -> None:
    fleet.add_server('srv-1', ['l1'])
    fleet.add_server('srv-2', ['l1'], initiator_label=False)
    with PrometheusProcess([fleet.target]) as prometheus:
        prometheus.wait_for_series('imessage_unanswered_sends_total', timeout=20)
        fleet.new_conversations('srv-1', 'l1', 3, initiator='line')
        fleet.new_conversations('srv-1', 'l1', 2)
        fleet.new_conversations('srv-2', 'l1', 4)
        fleet.unanswered('srv-1', 'l1', streak=7, n=5)
        prometheus.wait_for_series('imessage_unanswered_sends_total{streak="5+"} == 5', timeout=15)
        prometheus.wait_for_series('imessage_new_conversations_total{server="srv-2"} == 4', timeout=15)

        def values(promql: str) -> dict[str, float]:
            return {'/'.join(f"{k}={v}" for k, v in sorted(s['metric'].items()) if k in {'server', 'initiator'}):
                    float(s['value'][1]) for s in prometheus.query(promql)}

        # The first sample of every new series is zero...
        firsts = prometheus.query('min_over_time(imessage_unanswered_sends_total{server="srv-1"}[1m])')
        assert len(firsts) == 5 and {float(s['value'][1]) for s in firsts} == {0.0}
        assert set(values('min_over_time(imessage_new_conversations_total[1m])').values()) == {0.0}
        # ...so increases count every conversation, and sums over `initiator` are the old totals.
        assert values('sum by (server) (imessage_new_conversations_total)') == {
            'server=srv-1': 5, 'server=srv-2': 4}
        assert values('sum by (server, initiator) (imessage_new_conversations_total)') == {
            'initiator=line/server=srv-1': 3, 'initiator=recipient/server=srv-1': 2, 'server=srv-2': 4}
