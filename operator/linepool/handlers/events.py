"""Post Kubernetes events through kopf's poster, for the pool and for its servers."""

from collections.abc import Mapping
from typing import Any, cast

import kopf

from linepool.api.types import Reason


def post_event(target: Mapping[str, Any], *, type: str, reason: Reason, message: str) -> None:
    """Queue an event on ``target`` (any object body with apiVersion, kind and metadata)."""
    # kopf only reads apiVersion, kind and metadata from the body, so index snapshots work too.
    kopf.event(cast(kopf.Body, target), type=type, reason=reason.value, message=message)
