"""The operator's series go away with the pool or server they describe, so alerts never fire on ghosts."""

from prometheus_client import REGISTRY

from linepool import telemetry


def series(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_deleted_pool_leaves_no_series_behind() -> None:
    pool = {"namespace": "t-ns", "pool": "gone"}
    telemetry.POOL_UTILIZATION.labels("t-ns", "gone").set(0.8)
    telemetry.POOL_CONDITION.labels("t-ns", "gone", "ScalingLimited").set(1)
    telemetry.POOL_LINES.labels("t-ns", "gone", "AtRisk").set(2)
    telemetry.KEEPALIVE_LINES.labels("t-ns", "gone", "due").set(3)
    telemetry.SERVER_UTILIZATION.labels("t-ns", "gone", "gone-0").set(1.0)
    telemetry.forget_pool(namespace="t-ns", pool="gone", servers=["gone-0"])
    assert series("linepool_pool_utilization", **pool) is None
    assert series("linepool_pool_condition", **pool, type="ScalingLimited") is None
    assert series("linepool_pool_lines", **pool, state="AtRisk") is None
    assert series("linepool_keepalive_lines", **pool, stage="due") is None
    assert series("linepool_server_utilization", **pool, server="gone-0") is None


def test_a_server_that_leaves_the_pool_stops_reporting_only_itself() -> None:
    telemetry.SERVER_UTILIZATION.labels("t-ns", "kept", "a").set(1.0)
    telemetry.SERVER_UTILIZATION.labels("t-ns", "kept", "b").set(0.5)
    telemetry.forget_servers(namespace="t-ns", pool="kept", servers=["a"])
    assert series("linepool_server_utilization", namespace="t-ns", pool="kept", server="a") is None
    assert series("linepool_server_utilization", namespace="t-ns", pool="kept", server="b") == 0.5
