"""Benchmark of one decision pass: 1,000 servers x 10 lines, from query answers to status.

Line health is included, as the health query of a poll answers it: which metrics each relay
exports, and the figures of the lines past a threshold (one in a hundred, bursting).
"""

import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime

from linepool.adapters.prometheus import render_queries
from linepool.api.spec import parse_pool_spec
from linepool.logic.observations import FIGURE_LABEL, Sample, assemble
from linepool.logic.pool import PoolDecision, PoolMemory, PoolView, ServerView, decide_pool
from linepool.process import tune_garbage_collector

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def fleet(servers: int, lines: int) -> tuple[list[ServerView], list[Sample], list[Sample], list[Sample]]:
    views, sent, new, health = [], [], [], []
    for s in range(servers):
        name = f"bench-{s}"
        ids = [f"+1{s:06d}{line:04d}" for line in range(lines)]
        views.append(ServerView(name=name, generation=1, created=NOW, spec={
            "pool": "bench", "endpoint": f"http://relay-{s}:8080", "lines": [{"id": i} for i in ids]}))
        for index, line in enumerate(ids):
            labels = {"server": name, "line": line}
            sent.append((labels, float((s * 37 + index * 11) % 500)))
            new.append((labels, float(index % 7)))
            if (s * lines + index) % 100 == 0:  # one line in a hundred bursts: the query names only those
                health.append(({**labels, FIGURE_LABEL: "burst"}, 120.0))
        for family in ("has_sent", "has_received", "has_unanswered", "has_initiator"):
            health.append(({"server": name, FIGURE_LABEL: family}, float(lines)))
    return views, sent, new, health


def one_pass(views: list[ServerView], sent: list[Sample], new: list[Sample], health: list[Sample],
             memory: PoolMemory) -> PoolDecision:
    spec = parse_pool_spec({"metrics": {"prometheusURL": "http://prometheus:9090"},
                            "scaling": {"maxServers": 1000, "minServers": 1}})
    render_queries(templates=spec.metrics.queries, servers=[v.name for v in views], window="86400s",
                   health=spec.health)
    observation = assemble(time=NOW, sent=sent, new_conversations=new, line_state=[], activity=sent, health=health)
    decision = decide_pool(pool=PoolView(name="bench", namespace="bench", spec=spec), servers=views,
                           observation=observation, metrics_error=None, memory=memory, now=NOW)
    return decision


def measure(servers: int = 1000, lines: int = 10, repeats: int = 7) -> dict[str, float]:
    """CPU time of a steady pass: the servers carry the status the previous pass wrote.

    The collector is tuned as ``linepool run`` tunes it, so the figure is the operator's.
    """
    tune_garbage_collector()
    views, sent, new, health = fleet(servers, lines)
    first = one_pass(views, sent, new, health, PoolMemory())
    statuses = {outcome.name: outcome.status for outcome in first.servers}
    views = [replace(view, status=statuses[view.name]) for view in views]
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        one_pass(views, sent, new, health, first.memory)
        samples.append(time.process_time() - started)
    return {"median_ms": statistics.median(samples) * 1000, "max_ms": max(samples) * 1000}


if __name__ == "__main__":
    print(measure())
