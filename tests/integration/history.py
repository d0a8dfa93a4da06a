"""Twelve days of known growth for a real Prometheus, backfilled with ``promtool``: the history that
``linepool plan --from-cluster`` and the operator's forecast fit (the ``history`` fixture in conftest.py).
"""

import time

from linepool.sandbox.prometheus import PrometheusProcess, backfill

GROWTH = 0.20  # a week
PER_USER = 4.0  # messages per user per day
FIRST_DAY_USERS = 100.0  # new users a day at the start of the history
BEFORE = 300.0  # users before the history
DAYS = 12
STEP = 900  # seconds between samples
LINES = {"hist-0": ["+14155553000", "+14155553001"], "hist-1": ["+14155553010", "+14155553011"]}


def openmetrics(end: int) -> str:
    """Counters of every line, from ``DAYS`` days before ``end`` to ``end``, under the known model."""
    start = end - DAYS * 86400
    lines = [line for ids in LINES.values() for line in ids]
    rows: dict[str, list[str]] = {"imessage_new_conversations": [], "imessage_messages_sent": []}
    new_total, sent_total, users = 0.0, 0.0, BEFORE
    for at in range(start, end + 1, STEP):
        day = (at - start) / 86400
        arrivals = FIRST_DAY_USERS * (1 + GROWTH) ** (day / 7) * STEP / 86400
        new_total += arrivals
        users += arrivals
        sent_total += PER_USER * users * STEP / 86400
        for server, ids in LINES.items():
            for line in ids:
                labels = f'job="fleet",instance="backfill",server="{server}",line="{line}"'
                share = 1 / len(lines)
                rows["imessage_new_conversations"].append(
                    f"imessage_new_conversations_total{{{labels}}} {new_total * share:.4f} {at}")
                rows["imessage_messages_sent"].append(
                    f"imessage_messages_sent_total{{{labels}}} {sent_total * share:.4f} {at}")
    return "".join(f"# TYPE {name} counter\n" + "\n".join(samples) + "\n" for name, samples in rows.items())


def start_history() -> PrometheusProcess:
    """A started Prometheus holding the history up to a minute ago; the caller closes it."""
    server = PrometheusProcess([])
    try:
        backfill(openmetrics(int(time.time()) - 60), server.data_dir)  # before the first start, as promtool needs
        server.start()
    except BaseException:
        server.close()
        raise
    return server


