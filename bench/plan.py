"""Benchmark of capacity planning (``linepool plan``, model mode): a year of a 1,000-server pool.

The pool has 1,000 servers of 10 lines each (maxServers 1,000, so it cannot grow further) and
half a million users, with 5,000 new users a day growing 2% a week, 1% weekly churn and 4
messages per user a day: it climbs to stopAt, servers saturate and resume, new users are refused
in the evening peaks. Measured: one call of ``simulate`` for 365 days, 8,760 hourly operator passes
over 1,000 servers. The issue's target is 10 s on the 2-core development machine.
"""

import time
from datetime import UTC, datetime

from linepool.api.spec import parse_pool_spec
from linepool.logic.plan import PlanResult, PlanServer, TrafficModel, simulate

START = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_SECONDS = 10.0


def scenario(servers: int = 1000, lines: int = 10) -> tuple[list[PlanServer], TrafficModel]:
    plan_servers = [
        PlanServer(name=f"bench-{s}", lines=tuple(f"+1{s:06d}{line:04d}" for line in range(lines)))
        for s in range(servers)
    ]
    model = TrafficModel(new_users_per_day=5000, weekly_growth=0.02, messages_per_user_per_day=4,
                         weekly_churn=0.01, initial_users=50 * servers * lines)
    return plan_servers, model


def measure(servers: int = 1000, lines: int = 10, days: int = 365) -> float:
    """Seconds (wall clock) to plan ``days`` days of ``servers`` servers with ``lines`` lines each."""
    spec = parse_pool_spec({
        "metrics": {"prometheusURL": "http://prometheus:9090"},
        "scaling": {"maxServers": servers, "linesPerServer": lines},
        "inventory": [f"+1999{n:07d}" for n in range(2 * lines)],
    })
    plan_servers, model = scenario(servers, lines)
    started = time.perf_counter()
    result: PlanResult = simulate(spec=spec, servers=plan_servers, model=model, days=days, start=START,
                                  pool="bench")
    elapsed = time.perf_counter() - started
    assert len(result.days) == days
    return elapsed


def main() -> None:
    seconds = measure()
    verdict = "within" if seconds <= TARGET_SECONDS else "OVER"
    print(f"capacity plan, 365 days x 1,000 servers x 10 lines: {seconds:.1f} s "
          f"({verdict} the {TARGET_SECONDS:.0f} s target)")


if __name__ == "__main__":
    main()
