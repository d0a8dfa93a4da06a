"""Benchmark of keep-alive planning over 10,000 lines (1,000 servers x 10), pure logic.

Measured as the operator runs it: from the servers' line statuses (``collect_lines``) to a plan
(``plan_keep_alive``). Two cases: a steady pool, where every line had traffic lately and nothing
is due (the common case), and the worst case, where every line is idle past idleAfter with no
plan recorded yet, so every line is due, looks for a partner and a slot, and the pool's
maxPerDay pushes most of them days ahead.
"""

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from linepool.api.conditions import format_time
from linepool.api.spec import KeepAlive
from linepool.logic.keepalive import ServerFacts, plan_keep_alive
from linepool.logic.keepalive_status import collect_lines
from linepool.process import tune_garbage_collector

NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)  # a Thursday, 10:00 in New York


def line_statuses(servers: int, lines: int, *, idle_days: float) -> dict[str, list[dict[str, Any]]]:
    return {
        f"bench-{s}": [
            {"id": f"+1{s:06d}{line:04d}", "role": "Primary", "state": "Idle", "assignable": True,
             "messagesInWindow": 0, "newConversationsInWindow": 0,
             "lastActivityTime": format_time(NOW - timedelta(days=idle_days, minutes=s * lines + line))}
            for line in range(lines)
        ]
        for s in range(servers)
    }


def measure(servers: int = 1000, lines: int = 10, repeats: int = 7) -> dict[str, float]:
    tune_garbage_collector()
    spec = KeepAlive()
    server_facts = {f"bench-{s}": ServerFacts(name=f"bench-{s}", headroom=1000) for s in range(servers)}
    out: dict[str, float] = {}
    for case, idle_days in (("steady", 1.0), ("all_due", 30.0)):
        statuses = line_statuses(servers, lines, idle_days=idle_days)
        samples = []
        planned = 0
        for _ in range(repeats):
            started = time.process_time()
            work, directory, oldest = collect_lines(lines_by_server=statuses, idle_after=spec.idle_after, now=NOW)
            plan = plan_keep_alive(spec=spec, timezone="America/New_York", lines=work, servers=server_facts,
                                   now=NOW, directory=directory, oldest_activity=oldest)
            samples.append(time.process_time() - started)
            planned = sum(1 for o in plan.lines.values() if o.exchange is not None)
        out[f"{case}_median_ms"] = statistics.median(samples) * 1000
        out[f"{case}_max_ms"] = max(samples) * 1000
        out[f"{case}_planned"] = planned
    return out


if __name__ == "__main__":
    print(measure())
