"""A fake-clock driver for the keep-alive planner: passes, sends and status round trips.

Each pass plans from what status would hold (exchanges go through ``to_status`` and back, as
they do through the API server), "delivers" the due sends with a chosen outcome, and records
every send that went out. Tests then assert on the sends a user would see.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from linepool.api.spec import KeepAlive
from linepool.logic.keepalive import (
    Delivery,
    Exchange,
    KeepAlivePlan,
    LineFacts,
    RetryPolicy,
    Send,
    ServerFacts,
    exchange_from_status,
    plan_keep_alive,
    settle,
)


@dataclass(frozen=True)
class Delivered:
    at: datetime
    send: Send


@dataclass
class Simulation:
    spec: KeepAlive
    timezone: str
    lines: list[LineFacts]
    servers: dict[str, ServerFacts] = field(default_factory=dict)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    deliver: Callable[[Send], Delivery] = lambda send: Delivery.SENT
    delivered: list[Delivered] = field(default_factory=list)
    attempts: list[Delivered] = field(default_factory=list)
    plans: list[KeepAlivePlan] = field(default_factory=list)

    def step(self, now: datetime) -> KeepAlivePlan:
        plan = plan_keep_alive(spec=self.spec, timezone=self.timezone, lines=self.lines, servers=self.servers,
                               now=now)
        self.plans.append(plan)
        exchanges: dict[tuple[str, str], Exchange | None] = {
            key: outcome.exchange for key, outcome in plan.lines.items()
        }
        touched: set[str] = set()
        for send in plan.sends:
            exchange = exchanges[send.owner]
            assert exchange is not None
            delivery = self.deliver(send)
            self.attempts.append(Delivered(now, send))
            result = settle(plan=plan, send=send, exchange=exchange, delivery=delivery, detail=delivery.value,
                            retry_after=None, spec=self.spec, timezone=self.timezone, policy=self.policy, now=now)
            exchanges[send.owner] = result.exchange
            if result.outcome == "sent":
                self.delivered.append(Delivered(now, send))
                touched.update(result.touched)
        self.lines = [
            facts._replace(
                exchange=_round_trip(exchanges[(facts.server, facts.line)]),
                last_keep_alive=now if facts.line in touched else facts.last_keep_alive,
            )
            for facts in self.lines
        ]
        return plan

    def run(self, *, start: datetime, end: datetime, every: timedelta) -> None:
        now = start
        while now < end:
            self.step(now)
            now += every


def _round_trip(exchange: Exchange | None) -> Exchange | None:
    return exchange_from_status(exchange.to_status()) if exchange is not None else None


def sends_by(delivered: Sequence[Delivered], key: Callable[[Delivered], str]) -> Mapping[str, list[datetime]]:
    out: dict[str, list[datetime]] = {}
    for item in delivered:
        out.setdefault(key(item), []).append(item.at)
    return out
