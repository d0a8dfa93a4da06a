"""The loading helpers in crd_files.py, and property tests (hypothesis) of the CRDs' hand-written
patterns for durations and line ids.

The patterns are checked here with Python's ``re``, which agrees with the API server's RE2 on these
simple expressions; what the server itself does with them is in test_bad_manifests.py and
test_crds.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from .crd_files import BAD_MANIFESTS_DIR, crd_named, iter_schema_nodes, read_header, rule_message

POOL_SCHEMA = crd_named("linepools.linepool.dev").schema("v1alpha1")
SPEC = POOL_SCHEMA["properties"]["spec"]["properties"]
DURATION = re.compile(SPEC["metrics"]["properties"]["pollInterval"]["pattern"])
LINE_ID = re.compile(SPEC["inventory"]["items"]["pattern"])


def test_read_header(tmp_path: Path) -> None:
    path = tmp_path / "case.yaml"
    path.write_text(
        "# A comment.\n# expect: one\n# Expect: two\n\n# transition: true\nkind: X\n# expect: late\n"
    )
    assert read_header(path) == {"expect": ["one", "two"], "transition": ["true"]}


def test_read_header_of_a_real_case() -> None:
    header = read_header(BAD_MANIFESTS_DIR / "ms-pool-changed.yaml")
    assert header == {"expect": ["pool is immutable; create a new MessagingServer instead"], "transition": ["true"]}


def test_iter_schema_nodes_paths() -> None:
    paths = {path for path, _ in iter_schema_nodes(POOL_SCHEMA)}
    assert {"<root>", "spec.inventory[*]", "spec.scaling.serverTemplate.metadata.labels.*"} <= paths


def test_rule_message_joins_folded_lines() -> None:
    assert rule_message({"message": "a  b\nc "}) == "a b c"
    assert rule_message({"rule": "true"}) == ""


_UNITS = st.sampled_from(["ms", "s", "m", "h", "d"])
_NUMBERS = st.one_of(
    st.integers(0, 10**6).map(str),
    st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]}"),
)


@given(st.lists(st.tuples(_NUMBERS, _UNITS).map("".join), min_size=1, max_size=4).map("".join))
def test_duration_pattern_accepts_go_style_durations(duration: str) -> None:
    assert DURATION.match(duration)


@given(st.text(max_size=12))
def test_duration_pattern_rejects_anything_without_a_unit_suffix(text: str) -> None:
    if not re.search(r"(ms|s|m|h|d)$", text):
        assert not DURATION.match(text)


@given(st.from_regex(r"\A\+[1-9][0-9]{6,14}\Z"))
def test_line_id_pattern_accepts_e164(number: str) -> None:
    assert LINE_ID.match(number)


@given(st.from_regex(r"\A[0-9]{7,15}\Z"))
def test_line_id_pattern_rejects_numbers_without_plus(number: str) -> None:
    assert not LINE_ID.match(number)
