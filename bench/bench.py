"""``make bench``: print the operator's performance figures against the issue's targets.

1. CPU time of one decision pass over 1,000 servers x 10 lines (pure logic, in process), and
   of keep-alive planning over the same 10,000 lines.
2. A live run: the real operator as a child process, the emulated API server, a real
   Prometheus and a simulated fleet of the same size. From it: PromQL queries per pool per
   poll (also at 1 server x 1 line, to show it does not grow), Kubernetes API writes in a
   steady poll, and the operator's resident memory.
3. The placement service (``linepool serve``): new placements and sticky look-ups per second,
   with latencies, on SQLite and PostgreSQL, and budgets under 64 concurrent clients
   (bench/placement.py).
4. ``linepool plan``: 365 days of 1,000 servers x 10 lines, and the same pool when its inventory
   runs out midway (bench/plan.py).
"""

import argparse
import pathlib
import sys
import tempfile
import time

from bench.decision_pass import measure
from bench.keepalive_plan import measure as measure_keep_alive
from bench.placement import measure as measure_placement
from bench.placement import report as report_placement
from bench.plan import measure as measure_plan
from bench.plan import measure_short as measure_plan_short
from linepool.sandbox.apiserver import ApiServerThread
from linepool.sandbox.fleet import Fleet
from linepool.sandbox.operator_process import OperatorProcess
from linepool.sandbox.prometheus import PrometheusProcess

NAMESPACE = "bench"


def metric(page: str, name: str, pool: str) -> float:
    total = 0.0
    for line in page.splitlines():
        if line.startswith(name) and f'pool="{pool}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def rss_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            sys.exit(f"bench: timed out waiting for {what}")
        time.sleep(0.5)


def live(*, servers: int, lines: int, workdir: pathlib.Path) -> dict[str, float]:
    """Run the whole stack with one pool of ``servers`` x ``lines`` and measure it."""
    pool = f"p{servers}x{lines}"
    with Fleet() as fleet, ApiServerThread() as api, \
            PrometheusProcess([fleet.target], workdir=workdir / f"prom-{pool}", scrape_interval="2s") as prometheus:
        api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        kubeconfig = api.write_kubeconfig(workdir / f"kubeconfig-{pool}", namespace=NAMESPACE)
        api.apply({"apiVersion": "linepool.dev/v1alpha1", "kind": "LinePool",
                   "metadata": {"name": pool, "namespace": NAMESPACE},
                   "spec": {"scaling": {"mode": "Off", "minServers": 0, "maxServers": 1000},
                            "metrics": {"prometheusURL": prometheus.url, "pollInterval": "2s"}}})
        for s in range(servers):
            ids = [f"+1{s:06d}{line:04d}" for line in range(lines)]
            fleet.add_server(f"{pool}-{s}", ids)
            api.apply({"apiVersion": "linepool.dev/v1alpha1", "kind": "MessagingServer",
                       "metadata": {"name": f"{pool}-{s}", "namespace": NAMESPACE},
                       "spec": {"pool": pool, "endpoint": "http://relay:8080",
                                "lines": [{"id": i} for i in ids]}})
        wait(lambda: len(prometheus.query(f'count(imessage_messages_sent_total{{server=~"{pool}-.*"}})') or []) > 0
             and float(prometheus.query(f'count(imessage_messages_sent_total{{server=~"{pool}-.*"}})')[0]["value"][1])
             >= servers * lines, 120, "Prometheus to scrape every line")
        operator = OperatorProcess(kubeconfig=kubeconfig, namespaces=[NAMESPACE], log_path=workdir / f"op-{pool}.log")
        with operator:
            operator.wait_metrics()
            wait(lambda: (api.get("linepools", NAMESPACE, pool) or {}).get("status", {}).get("servers", {})
                 .get("total") == servers, 180, "the first pass over every server")
            # Settle: the first passes write every server's status and label once.
            def polls() -> float:
                return metric(operator.metrics(), "linepool_reconcile_duration_seconds_count", pool)

            quiet_polls = 0
            while quiet_polls < 2:
                before_writes, target = api.write_count(), polls() + 1
                wait(lambda: polls() >= target, 60, "a poll")  # noqa: B023 (called at once)
                quiet_polls = quiet_polls + 1 if api.write_count() == before_writes else 0
            page = operator.metrics()
            polls0 = metric(page, "linepool_reconcile_duration_seconds_count", pool)
            queries0 = metric(page, "linepool_prometheus_queries_total", pool)
            seconds0 = metric(page, "linepool_reconcile_duration_seconds_sum", pool)
            api.reset_counters()
            wait(lambda: metric(operator.metrics(), "linepool_reconcile_duration_seconds_count", pool) >= polls0 + 5,
                 120, "five steady polls")
            page = operator.metrics()
            polls = metric(page, "linepool_reconcile_duration_seconds_count", pool) - polls0
            return {
                "queries_per_poll": (metric(page, "linepool_prometheus_queries_total", pool) - queries0) / polls,
                "writes_per_steady_poll": api.write_count() / polls,
                "poll_seconds": (metric(page, "linepool_reconcile_duration_seconds_sum", pool) - seconds0) / polls,
                "rss_mb": rss_mb(operator.pid or 0),
            }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=10)
    args = parser.parse_args()

    cpu = measure(servers=args.servers, lines=args.lines)
    print(f"decision pass, {args.servers} servers x {args.lines} lines, line health and keep-alive included: "
          f"{cpu['median_ms']:.1f} ms CPU median (max {cpu['max_ms']:.1f})   target <= 100 ms")
    plan = measure_keep_alive(servers=args.servers, lines=args.lines)
    total = args.servers * args.lines
    print(f"keep-alive planning, {total} lines, every line due: {plan['all_due_median_ms']:.1f} ms CPU median "
          f"(max {plan['all_due_max_ms']:.1f}, {plan['all_due_planned']:.0f} exchanges planned)   target <= 100 ms")
    print(f"keep-alive planning, {total} lines, none due (steady): {plan['steady_median_ms']:.1f} ms CPU median")
    with tempfile.TemporaryDirectory(prefix="linepool-bench-") as tmp:
        small = live(servers=1, lines=1, workdir=pathlib.Path(tmp))
        big = live(servers=args.servers, lines=args.lines, workdir=pathlib.Path(tmp))
    print(f"PromQL queries per pool per poll: {small['queries_per_poll']:.1f} at 1 line, "
          f"{big['queries_per_poll']:.1f} at {args.servers * args.lines} lines (line health included)   target <= 8")
    print(f"Kubernetes API writes per steady poll: {big['writes_per_steady_poll']:.2f}   target 0")
    print(f"operator RSS with {args.servers * args.lines} lines: {big['rss_mb']:.0f} MB   target <= 200 MB")
    print(f"live poll wall time with {args.servers * args.lines} lines: {big['poll_seconds'] * 1000:.0f} ms "
          "(queries, decision and writes)")
    seconds = measure_plan()
    print(f"capacity plan (linepool plan), 365 days x 1,000 servers x 10 lines: {seconds:.1f} s   target <= 10 s")
    seconds = measure_plan_short()
    print(f"capacity plan, the same pool when its inventory runs out midway (a second run for the 'needed' "
          f"figures): {seconds:.1f} s   target <= 10 s")
    with tempfile.TemporaryDirectory(prefix="linepool-bench-placement-") as tmp:
        report_placement(measure_placement(pathlib.Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
