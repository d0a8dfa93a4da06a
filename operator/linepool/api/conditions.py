"""Status conditions keyed by type, as Kubernetes API conventions describe them.

``lastTransitionTime`` moves only when a condition's status flips, so re-asserting the same
condition is free: it produces an identical list and therefore no API write.
"""

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from linepool.api.types import ConditionStatus, ConditionType, Reason


class Condition(NamedTuple):
    type: ConditionType
    status: ConditionStatus
    reason: Reason
    message: str

    @property
    def is_true(self) -> bool:
        return self.status is ConditionStatus.TRUE


def condition(type_: ConditionType, ok: bool, reason: Reason, message: str) -> Condition:
    """Build a condition from a boolean, the common case."""
    status = ConditionStatus.TRUE if ok else ConditionStatus.FALSE
    return Condition(type=type_, status=status, reason=reason, message=message)


@functools.lru_cache(maxsize=256)
def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, at whole seconds, as Kubernetes writes times."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime | None:
    """Read an RFC 3339 time written by us or by the API server; None when absent or bad."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def merge_conditions(
    *,
    previous: Sequence[Mapping[str, Any]] | None,
    current: Iterable[Condition],
    now: datetime,
    observed_generation: int | None,
) -> list[dict[str, Any]]:
    """Render ``current`` as a status list, keeping transition times of unflipped conditions.

    Conditions of other types found in ``previous`` are kept as they are: another writer (or a
    newer operator) may own them.
    """
    stamp = format_time(now)
    old_by_type = {str(item.get("type")): item for item in previous or () if isinstance(item, Mapping)}
    rendered: dict[str, dict[str, Any]] = {}
    for cond in current:
        # ``_value_`` rather than ``value``: the enum descriptor is measurable at a thousand servers.
        type_text, status_text = cond.type._value_, cond.status._value_
        old = old_by_type.get(type_text)
        flipped = old is None or old.get("status") != status_text
        item: dict[str, Any] = {
            "type": type_text,
            "status": status_text,
            "reason": cond.reason._value_,
            "message": cond.message,
            "lastTransitionTime": stamp if flipped or old is None else old.get("lastTransitionTime", stamp),
        }
        if observed_generation is not None:
            item["observedGeneration"] = observed_generation
        rendered[type_text] = item
    kept = [dict(old) for type_, old in old_by_type.items() if type_ not in rendered]
    return sorted([*rendered.values(), *kept], key=lambda item: str(item["type"]))


def reports_new_problem(conditions: Any, type_: ConditionType, message: str, *, problem: bool = True) -> bool:
    """Whether raising ``type_`` with ``message`` says something the conditions do not yet say.

    ``problem`` is the status that means trouble: True for InvalidSpec, False for a condition
    such as CredentialsAvailable. An event about a problem is due only when this returns True,
    so a problem that persists is announced once.
    """
    old = find_condition(conditions, type_)
    return old is None or old.get("status") != ("True" if problem else "False") or old.get("message") != message


def find_condition(conditions: Any, type_: ConditionType) -> Mapping[str, Any] | None:
    """The raw condition of ``type_`` in a status list, if present."""
    if not isinstance(conditions, list):
        return None
    for item in conditions:
        if isinstance(item, Mapping) and item.get("type") == type_.value:
            return item
    return None
