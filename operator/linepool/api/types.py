"""Enumerations of the API: modes, phases, line states, health patterns, condition types and reasons.

They are ``str`` enums so that they serialise as the exact strings the CRD schema allows.
"""

from enum import StrEnum


class QuotaWindow(StrEnum):
    ROLLING_24H = "Rolling24h"
    CALENDAR_DAY = "CalendarDay"


class ScalingMode(StrEnum):
    AUTO = "Auto"
    DRY_RUN = "DryRun"
    OFF = "Off"


class LineRole(StrEnum):
    PRIMARY = "Primary"
    FALLBACK = "Fallback"


class ServerPhase(StrEnum):
    PENDING = "Pending"
    ACTIVE = "Active"
    SATURATED = "Saturated"
    CORDONED = "Cordoned"
    UNKNOWN = "Unknown"


class LineState(StrEnum):
    ACTIVE = "Active"
    IDLE = "Idle"
    AT_RISK = "AtRisk"
    FLAGGED = "Flagged"
    DEACTIVATED = "Deactivated"


class ConditionType(StrEnum):
    READY = "Ready"
    ASSIGNABLE = "Assignable"
    METRICS_AVAILABLE = "MetricsAvailable"
    SCALING_LIMITED = "ScalingLimited"
    INVALID_SPEC = "InvalidSpec"
    KEEP_ALIVE_HEALTHY = "KeepAliveHealthy"
    CREDENTIALS_AVAILABLE = "CredentialsAvailable"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """Machine-readable reasons, shared by conditions and events."""

    # Assignment.
    BELOW_STOP_AT = "BelowStopAt"
    SERVER_SATURATED = "ServerSaturated"
    ASSIGNMENT_RESUMED = "AssignmentResumed"
    SERVER_CORDONED = "ServerCordoned"
    SERVER_UNCORDONED = "ServerUncordoned"
    NO_SERIES_YET = "NoSeriesYet"
    # Metrics.
    METRICS_OK = "MetricsOK"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    METRICS_STALE = "MetricsStale"
    METRICS_RESTORED = "MetricsRestored"
    NO_SERIES = "NoSeries"
    # Scaling.
    SCALED_UP = "ScaledUp"
    SCALE_UP_BLOCKED = "ScaleUpBlocked"
    SCALE_UP_FAILED = "ScaleUpFailed"
    SCALE_UP_RECOMMENDED = "ScaleUpRecommended"
    AT_MAX_SERVERS = "AtMaxServers"
    INVENTORY_EXHAUSTED = "InventoryExhausted"
    WITHIN_LIMITS = "WithinLimits"
    # Forecast.
    INVENTORY_RUNNING_OUT = "InventoryRunningOut"
    # Spec.
    SPEC_VALID = "SpecValid"
    INVALID_SPEC = "InvalidSpec"
    POOL_NOT_FOUND = "PoolNotFound"
    LINE_CONFLICT = "LineConflict"
    # Readiness.
    RECONCILED = "Reconciled"
    PAUSED = "Paused"
    NO_ASSIGNABLE_LINES = "NoAssignableLines"
    # Keep-alive.
    KEEP_ALIVE_SENT = "KeepAliveSent"
    KEEP_ALIVE_REPLIED = "KeepAliveReplied"
    KEEP_ALIVE_DEFERRED = "KeepAliveDeferred"
    KEEP_ALIVE_RETRYING = "KeepAliveRetrying"
    KEEP_ALIVE_FAILED = "KeepAliveFailed"
    KEEP_ALIVE_DISABLED = "KeepAliveDisabled"
    LINES_FRESH = "LinesFresh"
    LINE_AT_RISK = "LineAtRisk"
    LINES_AT_RISK = "LinesAtRisk"
    CREDENTIALS_FOUND = "CredentialsFound"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_MISSING = "SecretKeyMissing"
    # Line health (risks of an Apple flag, distinct from the deactivation risk above).
    LINE_AT_FLAG_RISK = "LineAtFlagRisk"
    FLAG_RISK_CLEARED = "FlagRiskCleared"
    LINE_FLAGGED = "LineFlagged"
    LINE_RECOVERED = "LineRecovered"


class HealthPattern(StrEnum):
    """The behaviours that get a line flagged by Apple, in the order the issue ranks them.

    The order matters: it breaks ties when forensics names the probable cause of a flag.
    """

    BURST = "Burst"
    NO_EXCHANGE = "NoExchange"
    FOLLOW_UPS = "FollowUps"
    COLD_OUTREACH = "ColdOutreach"
    OFF_HOURS = "OffHours"


class KeepAlivePhase(StrEnum):
    """Progress of one keep-alive exchange, recorded in the line's status before the send."""

    PLANNED = "Planned"
    SENT = "Sent"
    REPLIED = "Replied"
    FAILED = "Failed"


class RecommendedAction(StrEnum):
    NONE = "None"
    SCALE_UP = "ScaleUp"
    BLOCKED = "Blocked"
