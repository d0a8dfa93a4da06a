"""The metric-name tokenizer that the dashboard and rule checks rely on."""

import pytest

from tests.observability.promql import metric_names


@pytest.mark.parametrize(("expr", "names"), [
    ("up", {"up"}),
    ('linepool_pool_utilization{namespace=~"$namespace", pool=~"$pool"}', {"linepool_pool_utilization"}),
    ("max by (namespace, pool) (linepool_pool_utilization >= linepool_pool_scale_up_at)",
     {"linepool_pool_utilization", "linepool_pool_scale_up_at"}),
    ('a and ignoring (type) (b{type="ScalingLimited"} == 1) unless on (namespace, pool) c', {"a", "b", "c"}),
    ("sum(rate(x_total[5m] offset 1h)) by (le) / sum without (instance) (y_total @ end())", {"x_total", "y_total"}),
    ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[$__rate_interval])))", {"h_bucket"}),
    ("increase(c_total{outcome=\"failed\"}[${__interval}]) > 1e3", {"c_total"}),
    ("absent(linepool_build_info)", {"linepool_build_info"}),
    ("count(z) or vector(0)", {"z"}),
    ("a * on (pod) group_left (node) b", {"a", "b"}),
    ('label_values(linepool_pool_utilization{namespace=~"$namespace"}, pool)', {"linepool_pool_utilization"}),
    ("label_values(namespace)", set()),
    ('sum by (state) (m{state="on"}) unless n{name="by (x)"}', {"m", "n"}),
    ("0.95 < x < 1", {"x"}),
])
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
