"""
The simulated fleet scraped by a real Prometheus: the metrics contract end to end.

Prometheus needs ~6 s before the first sample is queryable (target discovery batches
every 5 s), so the slow checks share one Prometheus per module.
"""
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from linepool.sandbox.fleet import Fleet
from linepool.sandbox.prometheus import PrometheusProcess, backfill

pytestmark = pytest.mark.integration


@pytest.fixture(scope='module')
def fleet() -> Iterator[Fleet]:
    with Fleet() as fleet:
        fleet.add_server('srv-1', ['line-a', 'line-b'])
        yield fleet


@pytest.fixture(scope='module')
def prometheus(fleet: Fleet) -> Iterator[PrometheusProcess]:
    with PrometheusProcess([fleet.target]) as prometheus:
        yield prometheus


def test_sent_messages_appear_in_prometheus(fleet: Fleet, prometheus: PrometheusProcess) -> None:
    fleet.send('srv-1', 'line-a', n=5)
    result = prometheus.wait_for_series('imessage_messages_sent_total{line="line-a"} > 0', timeout=15)
    (series,) = result
    assert series['metric']['server'] == 'srv-1'
    assert series['metric']['line'] == 'line-a'
    assert series['metric']['job'] == 'fleet'
    assert float(series['value'][1]) == 5

    states = prometheus.query('imessage_line_state{line="line-a"}')
    assert {s['metric']['state']: s['value'][1] for s in states} == {
        'active': '1', 'flagged': '0', 'deactivated': '0'}


def test_outages_hang_or_refuse_and_recover(fleet: Fleet, prometheus: PrometheusProcess) -> None:
    prometheus.wait_for_series('imessage_messages_sent_total', timeout=15)

    # Paused: the socket accepts, nothing answers.
    prometheus.pause()
    try:
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=0.5)
    finally:
        prometheus.resume()
    assert prometheus.query('imessage_messages_sent_total')

    # Stopped: connections are refused; restarted: same port, same data.
    prometheus.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=0.5)
    prometheus.start()
    assert prometheus.wait_for_series('count_over_time(imessage_messages_sent_total[5m])', timeout=5)


def test_backfilled_history_is_queryable(fleet: Fleet) -> None:
    now = int(time.time())
    samples = '\n'.join(
        f'imessage_messages_sent_total{{job="fleet",instance="{fleet.target}",server="srv-9",line="l"}} '
        f'{minute * 10} {now - 3 * 3600 + minute * 60}'
        for minute in range(60)
    )
    text = ('# HELP imessage_messages_sent Messages sent by a line.\n'
            '# TYPE imessage_messages_sent counter\n' + samples + '\n')
    prometheus = PrometheusProcess([])
    try:
        backfill(text, prometheus.data_dir)  # before the first start, as promtool requires
        prometheus.start()
        past = now - 3 * 3600 + 59 * 60
        result = prometheus.query(f'imessage_messages_sent_total{{server="srv-9"}} @ {past}')
    finally:
        prometheus.close()
    assert [float(series['value'][1]) for series in result] == [590]
