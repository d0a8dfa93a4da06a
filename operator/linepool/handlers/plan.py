"""``linepool plan``: read a pool's manifests and a traffic model, run the planner, print or draw it.

This module owns the command's glue: reading the manifest file, turning the flags into a
:class:`~linepool.logic.plan.TrafficModel`, and rendering the result as a table, as JSON, or as
a picture (matplotlib, imported only for ``--plot``). The simulation itself is
:mod:`linepool.logic.plan`; manifests are parsed by the operator's own parsers, so a bad
manifest gets the operator's message, with the field path.

Every mistake in the input is a :class:`PlanInputError`: the command prints it and exits with 2.
"""

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TextIO, TypeVar

import yaml

from linepool.adapters.plan_history import PlanSourceError, daily_history, read_pool
from linepool.api.conditions import parse_time
from linepool.api.durations import format_duration, parse_duration
from linepool.api.errors import SpecError
from linepool.api.spec import PoolSpec, ServerSpec, parse_pool_spec, parse_server_spec
from linepool.logic.forecast import live_model, plan_start
from linepool.logic.plan import MAX_DAYS, PlanDay, PlanResult, PlanServer, TrafficModel, simulate
from linepool.logic.plan_fit import HistoryFit, NotEnoughHistory, fit_history

# Beyond these, a figure is a typo, not a plan.
MAX_WEEKLY_RATE = 1.0  # growth or churn of 100% a week
MAX_NEW_USERS_PER_DAY = 10_000_000
MAX_MESSAGES_PER_USER_PER_DAY = 5000
MAX_LEAD_TIME = timedelta(days=365)
DAILY_TABLE_DAYS = 30  # longer plans are tabled per week
T = TypeVar("T")
_RATE = re.compile(
    r"^\s*(?P<sign>-)?(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<percent>%)?\s*(?:/\s*(?P<per>day|week|d|w))?\s*$"
)


class PlanInputError(ValueError):
    """A flag or the manifest file is wrong; the message says which and why."""


@dataclass(frozen=True, kw_only=True)
class Manifests:
    pool: str
    spec: PoolSpec
    servers: tuple[PlanServer, ...]
    # The pool's status.lastScaleTime, when it has one: the cooldown runs on from it.
    last_scale_time: datetime | None = None


def _negative(match: re.Match[str] | None, text: str, *, flag: str) -> None:
    if match is not None and match["sign"]:
        raise PlanInputError(f"{flag}: {text!r} must not be negative")


def parse_weekly_rate(text: str, *, flag: str) -> float:
    """A growth or churn rate as a weekly fraction: ``5%/week``, ``1%/day`` (compounded), ``5%``, ``0.05``, ``0``."""
    match = _RATE.match(text)
    if match is None:
        raise PlanInputError(f"{flag}: {text!r} is not a rate; write it like 5%/week, 1%/day or 0")
    _negative(match, text, flag=flag)
    value = float(match["number"]) / (100 if match["percent"] else 1)
    if match["per"] in ("day", "d"):
        value = (1 + value) ** 7 - 1
    if value > MAX_WEEKLY_RATE:
        raise PlanInputError(f"{flag}: {text!r} is more than 100% a week; is that a typo?")
    return value


def parse_share(text: str, *, flag: str) -> float:
    """A share between 0 and 1: ``80%`` or ``0.8``."""
    match = _RATE.match(text)
    if match is None or match["per"]:
        raise PlanInputError(f"{flag}: {text!r} is not a share; write it like 80% or 0.8")
    _negative(match, text, flag=flag)
    value = float(match["number"]) / (100 if match["percent"] else 1)
    if value > 1:
        raise PlanInputError(f"{flag}: {text!r} is more than 100%")
    return value


def parse_daily(text: str, *, flag: str, maximum: float) -> float:
    """A rate per day: ``200`` or ``200/day``; never negative, never above ``maximum``."""
    match = _RATE.match(text)
    if match is None or match["percent"] or match["per"] in ("week", "w"):
        raise PlanInputError(f"{flag}: {text!r} is not a number per day; write it like 200 or 200/day")
    _negative(match, text, flag=flag)
    value = float(match["number"])
    if value > maximum:
        raise PlanInputError(f"{flag}: {text!r} is more than {maximum:,.0f} a day; is that a typo?")
    return value


def read_manifests(path: str, *, servers: int | None) -> Manifests:
    """The LinePool in ``path`` and its MessagingServers (from the file, or ``servers`` from the template)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanInputError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise PlanInputError(f"{path}: not valid YAML: {exc}") from None
    if not all(isinstance(doc, Mapping) for doc in documents):
        raise PlanInputError(f"{path}: every document must be a Kubernetes object (a mapping)")
    return manifests_from(documents, path=path, servers=servers)


def manifests_from(documents: Sequence[Mapping[str, Any]], *, path: str, servers: int | None) -> Manifests:
    """The LinePool among ``documents`` and its MessagingServers (or ``servers`` from the template)."""
    pools = [doc for doc in documents if doc.get("kind") == "LinePool"]
    if len(pools) != 1:
        raise PlanInputError(f"{path}: needs exactly one LinePool document, found {len(pools)}")
    pool_doc = pools[0]
    name = str((pool_doc.get("metadata") or {}).get("name") or "pool")
    spec = _parsed(lambda: parse_pool_spec(_spec_of(pool_doc)), where=f"{path}: LinePool {name}")
    plan_servers: list[PlanServer] = []
    for doc in documents:
        if doc.get("kind") != "MessagingServer":
            continue
        server_name = str((doc.get("metadata") or {}).get("name") or "")
        where = f"{path}: MessagingServer {server_name or '(no name)'}"
        if not server_name:
            raise PlanInputError(f"{where}: metadata.name is required")
        server = _parsed(partial(_server_spec, doc), where=where)
        if server.pool != name:
            continue  # another pool's server in the same file
        plan_servers.append(PlanServer(name=server_name, lines=tuple(line.id for line in server.lines),
                                       quota=server.daily_message_quota, cordoned=server.cordoned))
    if servers is not None:
        if plan_servers:
            raise PlanInputError(f"--servers: {path} already lists {len(plan_servers)} MessagingServers of pool "
                                 f"{name}; use one or the other")
        plan_servers = _template_servers(pool=name, spec=spec, count=servers)
    # The operator reads its servers sorted by name.
    return Manifests(pool=name, spec=spec, servers=tuple(sorted(plan_servers, key=lambda s: s.name)))


def _server_spec(document: Mapping[str, Any]) -> ServerSpec:
    return parse_server_spec(_spec_of(document))


def _spec_of(document: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError("spec", "is required and must be an object")
    return spec


def _parsed(parse: Callable[[], T], *, where: str) -> T:
    try:
        return parse()
    except SpecError as exc:
        raise PlanInputError(f"{where}: {exc}") from None


def _template_servers(*, pool: str, spec: PoolSpec, count: int) -> list[PlanServer]:
    if not 0 <= count <= spec.scaling.max_servers:
        raise PlanInputError(f"--servers: must be between 0 and the pool's maxServers "
                             f"({spec.scaling.max_servers}), not {count}")
    quota = spec.scaling.server_template.spec.get("dailyMessageQuota")
    return [
        PlanServer(name=f"{pool}-{s}", quota=quota if isinstance(quota, int) and quota > 0 else None,
                   lines=tuple(f"model-{s}-{line}" for line in range(spec.scaling.lines_per_server)))
        for s in range(count)
    ]


def traffic_model(args: argparse.Namespace) -> TrafficModel:
    if args.new_users_per_day is None or args.messages_per_user_per_day is None:
        raise PlanInputError("--new-users-per-day and --messages-per-user-per-day are required with -f")
    if args.initial_users < 0:
        raise PlanInputError(f"--initial-users: must not be negative, not {args.initial_users}")
    return TrafficModel(
        new_users_per_day=parse_daily(args.new_users_per_day, flag="--new-users-per-day",
                                      maximum=MAX_NEW_USERS_PER_DAY),
        weekly_growth=parse_weekly_rate(args.growth, flag="--growth"),
        messages_per_user_per_day=parse_daily(args.messages_per_user_per_day, flag="--messages-per-user-per-day",
                                              maximum=MAX_MESSAGES_PER_USER_PER_DAY),
        weekly_churn=parse_weekly_rate(args.churn, flag="--churn"),
        inbound_first=parse_share(args.inbound_first, flag="--inbound-first"),
        initial_users=args.initial_users,
    )


def plan(args: argparse.Namespace, *, now: datetime | None = None, out: TextIO | None = None) -> int:
    """Run ``linepool plan``; the clock is passed in (the start of the plan is the current hour)."""
    out = out or sys.stdout
    if args.from_cluster:
        return plan_from_cluster(args, now=now, out=out)
    try:
        if not args.file:
            raise PlanInputError("-f/--file POOL.yaml is required")
        lead_time = _lead_time(args)
        model = traffic_model(args)
        manifests = read_manifests(args.file, servers=args.servers)
    except PlanInputError as exc:
        print(f"linepool plan: {exc}", file=sys.stderr)
        return 2
    return _run(args, manifests=manifests, model=model, lead_time=lead_time, now=now, out=out)


def _lead_time(args: argparse.Namespace) -> timedelta | None:
    """--lead-time, None when not given (then the pool's spec.forecast.leadTime); also checks --days and --plot."""
    if not 1 <= args.days <= MAX_DAYS:
        raise PlanInputError(f"--days: must be between 1 and {MAX_DAYS}, not {args.days}")
    if args.plot:
        _check_plot_target(args.plot)
    if args.lead_time is None:
        return None
    try:
        lead_time = parse_duration(args.lead_time)
    except ValueError as exc:
        raise PlanInputError(f"--lead-time: {exc}") from None
    if not timedelta(0) <= lead_time <= MAX_LEAD_TIME:
        raise PlanInputError(f"--lead-time: must be between 0 and 365d, not {args.lead_time!r}")
    return lead_time


def plan_from_cluster(args: argparse.Namespace, *, now: datetime | None, out: TextIO) -> int:
    """Live mode: the pool from the cluster, the traffic model fitted to its Prometheus history."""
    moment = now or datetime.now(UTC)
    try:
        namespace, _, name = str(args.from_cluster).partition("/")
        if not namespace or not name or "/" in name:
            raise PlanInputError(f"--from-cluster: {args.from_cluster!r} must be NAMESPACE/POOL")
        given = [flag for flag, value in (("--new-users-per-day", args.new_users_per_day),
                                          ("--messages-per-user-per-day", args.messages_per_user_per_day),
                                          ("--servers", args.servers)) if value is not None]
        if given or args.growth != "0" or args.initial_users:
            raise PlanInputError(f"--from-cluster: {', '.join(given) or '--growth/--initial-users'} come from the "
                                 "pool's history; drop them, or plan a model with -f")
        lead_time = _lead_time(args)
        churn = parse_weekly_rate(args.churn, flag="--churn")
        inbound = parse_share(args.inbound_first, flag="--inbound-first")
        cluster = read_pool(namespace=namespace, name=name)
        manifests = replace(
            manifests_from([cluster.pool, *cluster.servers], path=f"LinePool {namespace}/{name}", servers=None),
            last_scale_time=parse_time((cluster.pool.get("status") or {}).get("lastScaleTime")))
        new_users, messages = daily_history(spec=manifests.spec, servers=[s.name for s in manifests.servers],
                                            now=moment)
        try:
            fit = fit_history(new_users=new_users, messages=messages)
        except NotEnoughHistory as exc:
            raise PlanInputError(f"Prometheus at {manifests.spec.metrics.prometheus_url} {exc} for the servers of "
                                 f"{namespace}/{name}; plan a model with -f until there is more") from None
        # The model the operator's forecast (status.forecast) uses too, with the churn and share given here.
        model = live_model(fit=fit, weekly_churn=churn, inbound_first=inbound)
    except (PlanInputError, PlanSourceError) as exc:
        print(f"linepool plan: {exc}", file=sys.stderr)
        return 2
    print(fit_summary(fit), file=sys.stderr if args.output == "json" else out)
    return _run(args, manifests=manifests, model=model, lead_time=lead_time, now=moment, out=out,
                extra={"history": fit_json(fit)})


def fit_summary(fit: HistoryFit) -> str:
    shrinking = " (the pool is shrinking; planned with no growth)" if fit.shrinking else ""
    return (f"History: {fit.days} days from Prometheus. Fitted: {fit.new_users_per_day:,.0f} new users a day today, "
            f"growing {fit.weekly_growth:.1%} a week{shrinking} (R² {fit.growth_r2:.2f}); "
            f"{fit.messages_per_user_per_day:.2f} messages per user a day (R² {fit.messages_r2:.2f}); "
            f"about {fit.users:,} users now.\n")


def fit_json(fit: HistoryFit) -> dict[str, Any]:
    return {"days": fit.days, "newUsersPerDay": round(fit.new_users_per_day, 2),
            "weeklyGrowth": round(fit.weekly_growth, 4), "growthR2": round(fit.growth_r2, 4),
            "shrinking": fit.shrinking, "messagesPerUserPerDay": round(fit.messages_per_user_per_day, 3),
            "messagesR2": round(fit.messages_r2, 4), "users": fit.users}


def _run(args: argparse.Namespace, *, manifests: Manifests, model: TrafficModel, lead_time: timedelta | None,
         now: datetime | None, out: TextIO, extra: dict[str, Any] | None = None) -> int:
    if lead_time is None:
        lead_time = manifests.spec.forecast.lead_time
    result = simulate(spec=manifests.spec, servers=manifests.servers, model=model, days=args.days,
                      start=plan_start(now or datetime.now(UTC)), pool=manifests.pool, lead_time=lead_time,
                      last_scale_time=manifests.last_scale_time)
    if args.output == "json":
        json.dump({**result_json(result), **(extra or {})}, out, indent=2)
        out.write("\n")
    else:
        out.write(render_table(result, pool=manifests.pool, lead_time=lead_time))
    if args.plot:
        try:
            draw(result, spec=manifests.spec, pool=manifests.pool, path=args.plot)
        except ImportError:
            print("linepool plan: --plot needs matplotlib: pip install 'linepool-operator[plan]'", file=sys.stderr)
            return 2
    return 0


def _check_plot_target(path: str) -> None:
    if not path.lower().endswith(".png"):
        raise PlanInputError(f"--plot: {path!r} must be a .png file")
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise PlanInputError(f"--plot: the directory {str(parent)!r} does not exist")


# --- output -------------------------------------------------------------------------------------


def result_json(result: PlanResult) -> dict[str, Any]:
    summary = result.summary
    return {
        "firstScaleUpDay": summary.first_scale_up_day,
        "inventoryExhaustedDay": summary.inventory_exhausted_day,
        "serversNeededAtEnd": summary.servers_needed_at_end,
        "linesNeededAtEnd": summary.lines_needed_at_end,
        "linesToOrder": summary.lines_to_order,
        "orderBy": summary.order_by.isoformat() if summary.order_by else None,
        "days": [
            {
                "day": row.day, "date": row.date.isoformat(), "users": row.users, "messages": row.messages,
                "servers": row.servers, "lines": row.lines,
                "poolUtilization": round(row.pool_utilization, 4),
                "maxServerUtilization": round(row.max_server_utilization, 4),
                "saturatedServers": row.saturated, "scaleUps": row.scale_ups,
                "recommendedScaleUps": row.recommended, "spareInventory": row.spare_inventory,
                "refusedNewUsers": row.refused, "lineInitiatedNewUsers": row.line_initiated,
            }
            for row in result.days
        ],
    }


def _periods(rows: Sequence[PlanDay]) -> list[tuple[str, PlanDay, Sequence[PlanDay]]]:
    """Rows of the table: each day, or each week (7 days; the last may be shorter) for long plans."""
    if len(rows) <= DAILY_TABLE_DAYS:
        return [(str(row.day), row, [row]) for row in rows]
    periods = []
    for first in range(0, len(rows), 7):
        chunk = rows[first:first + 7]
        label = f"{chunk[0].day}-{chunk[-1].day}" if len(chunk) > 1 else str(chunk[0].day)
        periods.append((label, chunk[-1], chunk))
    return periods


def render_table(result: PlanResult, *, pool: str, lead_time: timedelta) -> str:
    """The plan as text: one row per day (per week beyond 30 days), then the summary."""
    weekly = len(result.days) > DAILY_TABLE_DAYS
    header = ("week (days)" if weekly else "day", "date", "users", "messages", "servers", "lines",
              "pool util", "saturated", "scale-ups", "spare lines", "refused")
    table: list[tuple[str, ...]] = [header]
    for label, last, chunk in _periods(result.days):
        table.append((
            label, last.date.isoformat(), f"{last.users:,}", f"{sum(r.messages for r in chunk):,}",
            str(last.servers), str(last.lines), f"{max(r.pool_utilization for r in chunk):.0%}",
            str(max(r.saturated for r in chunk)), str(sum(r.scale_ups for r in chunk)),
            str(last.spare_inventory), f"{sum(r.refused for r in chunk):,}",
        ))
    widths = [max(len(row[col]) for row in table) for col in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in table]
    summary = result.summary

    def day_text(day: int | None) -> str:
        return "never" if day is None else f"day {day} ({result.days[day].date.isoformat()})"

    recommending = sum(1 for r in result.days if r.recommended)
    note = "" if not recommending else \
        f"  (recommended on {recommending} days; scaling mode is not Auto, so nothing is added)"
    lines += [
        "",
        f"Pool {pool}, {len(result.days)} days from {result.days[0].date.isoformat()}:",
        f"  first scale-up:        {day_text(summary.first_scale_up_day)}{note}",
        f"  inventory runs out:    {day_text(summary.inventory_exhausted_day)}",
        f"  needed at the end:     {summary.servers_needed_at_end} servers, {summary.lines_needed_at_end} lines",
    ]
    if summary.lines_to_order:
        order_by = summary.order_by.isoformat() if summary.order_by else "now"
        lines.append(f"  order:                 {summary.lines_to_order} lines by {order_by} "
                     f"(lead time {format_duration(lead_time)})")
    else:
        lines.append("  order:                 nothing; the inventory lasts the whole plan")
    refused = sum(r.refused for r in result.days)
    if refused:
        lines.append(f"  refused new users:     {refused:,} (no line had new-conversation budget or room)")
    return "\n".join(lines) + "\n"


def draw(result: PlanResult, *, spec: PoolSpec, pool: str, path: str) -> tuple[int, int]:
    """Draw the plan to a PNG; return its size in pixels (width, height)."""
    # Imported here: matplotlib is an optional extra, and slow to import.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt  # noqa: PLC0415

    days = [row.day for row in result.days]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), dpi=100, sharex=True,
                                         gridspec_kw={"height_ratios": [3, 2]})
    try:
        top.plot(days, [row.pool_utilization * 100 for row in result.days], label="pool utilization (daily peak)",
                 color="tab:blue", linewidth=2)
        top.plot(days, [row.max_server_utilization * 100 for row in result.days],
                 label="busiest server's utilization (daily peak)", color="tab:orange", linewidth=1)
        top.axhline(spec.assignment.stop_at * 100, color="tab:red", linestyle="--",
                    label=f"stopAt {spec.assignment.stop_at:.0%}")
        top.axhline(spec.scaling.scale_up_at * 100, color="tab:purple", linestyle=":",
                    label=f"scaleUpAt {spec.scaling.scale_up_at:.0%}")
        top.set_ylabel("utilization of the daily quota (%)")
        top.set_ylim(bottom=0)
        top.grid(alpha=0.3)
        bottom.step(days, [row.servers for row in result.days], where="post", label="servers", color="tab:green")
        bottom.step(days, [row.spare_inventory for row in result.days], where="post",
                    label="spare inventory (lines)", color="tab:brown")
        bottom.set_xlabel(f"day of the plan (day 0 = {result.days[0].date.isoformat()})")
        bottom.set_ylabel("count")
        bottom.set_ylim(bottom=0)
        bottom.grid(alpha=0.3)
        exhausted = result.summary.inventory_exhausted_day
        if exhausted is not None:
            for axes in (top, bottom):
                axes.axvline(exhausted, color="black", linestyle="-.", label=f"inventory runs out (day {exhausted})")
        # Wherever the curves are not: a growing pool fills a different corner each time.
        top.legend(loc="best", fontsize="small", framealpha=0.9)
        bottom.legend(loc="best", fontsize="small", framealpha=0.9)
        summary = result.summary
        order = f", order {summary.lines_to_order} lines by {summary.order_by}" if summary.lines_to_order else ""
        figure.suptitle(f"linepool plan: pool {pool}, {len(days)} days "
                        f"({summary.servers_needed_at_end} servers needed at the end{order})")
        figure.tight_layout()
        figure.savefig(path, dpi=figure.dpi)
        width, height = figure.get_size_inches() * figure.dpi
        return math.ceil(width - 0.5), math.ceil(height - 0.5)
    finally:
        plt.close(figure)
