"""Line health in status: each line's risks of an Apple flag, its last flag with the forensics, the
events a person is told, and the pool's summary.

``logic.health`` decides (patterns, episodes, the cause of a flag); this module writes those verdicts
into the line and pool status dicts of a decision pass and words the events. Pure: the clock is an
argument, and the forensic figures of a flag are measured by the handler and passed in.
"""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from linepool.api.conditions import format_time
from linepool.api.durations import format_duration
from linepool.api.spec import Health
from linepool.api.types import HealthPattern, LineState, Reason
from linepool.logic.health import FlagFigures, FlagReport, HealthSample, evaluate_line, findings

# Pool status keys, per pattern.
SUMMARY_KEYS = {
    HealthPattern.BURST: "burst",
    HealthPattern.NO_EXCHANGE: "noExchange",
    HealthPattern.FOLLOW_UPS: "followUps",
    HealthPattern.COLD_OUTREACH: "coldOutreach",
    HealthPattern.OFF_HOURS: "offHours",
}
# States from which a line that was Flagged counts as back.
_RECOVERED = frozenset({LineState.ACTIVE.value, LineState.IDLE.value})


class Notice(NamedTuple):
    """An event about a line, posted on its server."""

    type: str
    reason: Reason
    message: str


@dataclass(frozen=True, kw_only=True)
class FlagEvidence:
    """What the handler measured for a line that turned Flagged: when, and the hour before."""

    time: datetime
    figures: FlagFigures
    report: FlagReport


def apply_line_health(*, entry: dict[str, Any], old: Mapping[str, Any], sample: HealthSample | None,
                      spec: Health, now: datetime, in_quiet_period: bool, frozen: bool,
                      flag: FlagEvidence | None, notices: list[Notice]) -> set[HealthPattern]:
    """Write ``flagRisks`` and ``lastFlag`` into a line's new status ``entry``; return its unmeasured patterns.

    ``old`` is the line's previous status. ``sample`` is None without fresh metrics (risks are kept:
    fail static). ``frozen`` (a paused pool) keeps the previous risks as they are, with no events.
    """
    line = entry["id"]
    previous = old.get("flagRisks") or ()
    unmeasured: set[HealthPattern] = set()
    if frozen:
        risks = [dict(item) for item in previous if isinstance(item, Mapping)]
    elif not previous and (sample is None or not spec.enabled):
        risks = []
    elif not previous and sample is not None and not (
            seen := findings(sample=sample, spec=spec, in_quiet_period=in_quiet_period))[0]:
        # The common case, first: a healthy line with no risk to carry (the same verdict that
        # evaluate_line would give, without its bookkeeping; a poll makes one per line).
        risks, unmeasured = [], seen[1]
    else:
        health = evaluate_line(sample=sample, spec=spec, previous=previous, now=now,
                               in_quiet_period=in_quiet_period)
        risks, unmeasured = health.risks, health.unmeasured
        cooldown = format_duration(spec.cooldown) if health.cleared or health.started else ""
        for pattern in health.cleared:
            notices.append(Notice("Normal", Reason.FLAG_RISK_CLEARED,
                                  f"line {line}: {pattern.value} not seen for {cooldown}; the line takes new users "
                                  "and keep-alives again"))
        for finding in health.started:
            notices.append(Notice("Warning", Reason.LINE_AT_FLAG_RISK,
                                  f"line {line} is at risk of an Apple flag ({finding.pattern.value}): "
                                  f"{finding.message}; it takes no new users and sends no keep-alive until the "
                                  f"pattern has not been seen for {cooldown}"))
    if risks:
        entry["flagRisks"] = risks
    last = old.get("lastFlag")
    if flag is not None:
        last = flag_status(flag, now=now)
        notices.append(Notice("Warning", Reason.LINE_FLAGGED,
                              f"line {line} was flagged at {format_time(flag.time)}: {flag.report.message}"))
    if last:
        entry["lastFlag"] = last
    if old.get("state") == LineState.FLAGGED.value and entry["state"] in _RECOVERED:
        notices.append(Notice("Normal", Reason.LINE_RECOVERED, f"line {line} is no longer flagged"))
    return unmeasured


def flag_status(flag: FlagEvidence, *, now: datetime) -> dict[str, Any]:
    """The ``lastFlag`` status of a line: when, the probable cause, the evidence, what to change."""
    figures = flag.figures
    status: dict[str, Any] = {
        "time": format_time(flag.time),
        "cause": flag.report.cause.value if flag.report.cause is not None else "None",
        "message": flag.report.message[:512],
        "evidence": [finding.to_status() for finding in flag.report.evidence[:5]],
        "reportedTime": format_time(now),
    }
    if figures.peak_per_minute is not None:
        status["peakPerMinute"] = round(figures.peak_per_minute, 1)
    if figures.received is not None:
        status["replies"] = round(figures.received)
    if figures.sent is not None:
        status["sent"] = round(figures.sent)
    return status


def needs_report(*, old: Mapping[str, Any], flagged_at: datetime | None) -> bool:
    """Whether a Flagged line still owes its forensic report: none yet for a flag at ``flagged_at``."""
    last = old.get("lastFlag")
    if not isinstance(last, Mapping) or not last.get("time"):
        return True
    return flagged_at is not None and last.get("time") != format_time(flagged_at)


def pool_summary(*, lines: Sequence[Mapping[str, Any]], unmeasured: set[HealthPattern]) -> dict[str, Any]:
    """``status.health`` of the pool: lines at risk of a flag, per pattern, and what cannot be measured."""
    by_pattern: Counter[str] = Counter()
    at_risk = 0
    for line in lines:
        risks = line.get("flagRisks")
        if risks:
            at_risk += 1
            by_pattern.update(str(risk.get("pattern")) for risk in risks)
    summary: dict[str, Any] = {"atRisk": at_risk}
    for pattern, key in SUMMARY_KEYS.items():
        summary[key] = by_pattern.get(pattern.value, 0)
    # Always written, empty too: status goes out as a merge patch, where a key left out is kept.
    summary["unmeasured"] = sorted(pattern.value for pattern in unmeasured)
    return summary
