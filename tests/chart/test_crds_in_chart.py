"""The chart's crds/ must be exact copies of the top-level crds/, the single source of the CRDs."""

from __future__ import annotations

from tests.binaries import REPO

SOURCE = REPO / "crds"
CHART_CRDS = REPO / "charts" / "linepool-operator" / "crds"
FIX = "cp crds/*.yaml charts/linepool-operator/crds/"


def test_chart_has_the_same_crd_files() -> None:
    source = sorted(p.name for p in SOURCE.glob("*.yaml"))
    chart = sorted(p.name for p in CHART_CRDS.glob("*.yaml"))
    assert source, f"no CRDs in {SOURCE}"
    assert chart == source, f"charts/linepool-operator/crds/ has {chart}, crds/ has {source}; run: {FIX}" \
        + (" (and delete the extra files)" if set(chart) - set(source) else "")


def test_chart_crds_are_byte_identical_copies() -> None:
    drifted = [p.name for p in sorted(SOURCE.glob("*.yaml"))
               if not (CHART_CRDS / p.name).is_file() or (CHART_CRDS / p.name).read_bytes() != p.read_bytes()]
    assert not drifted, f"charts/linepool-operator/crds/ is out of date for {drifted}; run: {FIX}"
