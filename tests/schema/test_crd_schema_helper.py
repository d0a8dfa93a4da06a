"""The helper in crd_schema.py behaves like the API server where the other tests rely on it.

Also property tests (hypothesis) for the hand-written patterns: durations and line ids.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from .crd_schema import (
    RULES_NOT_CHECKED,
    admit_manifest,
    apply_defaults,
    crd_named,
    format_path,
    read_header,
    to_cel,
    validate_manifest,
)

API_VERSION = "linepool.dev/v1alpha1"
POOL_SCHEMA = crd_named("linepools.linepool.dev").schema("v1alpha1")
SPEC = POOL_SCHEMA["properties"]["spec"]["properties"]
DURATION = re.compile(SPEC["metrics"]["properties"]["pollInterval"]["pattern"])
LINE_ID = re.compile(SPEC["inventory"]["items"]["pattern"])


def _pool(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "LinePool",
        "metadata": {"name": "p", **metadata},
        "spec": {"metrics": {"prometheusURL": "http://p:9090"}, **spec},
    }


def test_format_path() -> None:
    assert format_path(()) == "<root>"
    assert format_path(("spec", "lines", 0, "id")) == "spec.lines[0].id"


def test_unknown_fields_are_reported_and_pruned() -> None:
    stored, errors = admit_manifest(_pool({"assignment": {"stopat": 0.9}, "extra": 1}))
    assert errors == [
        'spec.assignment.stopat: unknown field "spec.assignment.stopat"',
        'spec.extra: unknown field "spec.extra"',
    ]
    assert stored["spec"]["assignment"] == {"stopAt": 0.75}, "pruned, then defaulted"


def test_metadata_is_left_to_the_api_server() -> None:
    manifest = _pool({}, namespace="messaging", labels={"a": "b"}, annotations={"x": "y"})
    assert validate_manifest(manifest) == []
    assert validate_manifest({**manifest, "metadata": {"namespace": "x"}}) == [
        "metadata.name: Required value: name or generateName is required"
    ]


def test_type_errors_block_cel_rules_like_the_api_server() -> None:
    errors = validate_manifest(_pool({"assignment": {"stopAt": "high", "resumeAt": 0.9}}))
    assert errors[0].startswith('spec.assignment.stopAt: Invalid value: "high"')
    assert RULES_NOT_CHECKED in errors[-1]


def test_range_errors_do_not_block_cel_rules() -> None:
    errors = validate_manifest(_pool({"scaling": {"minServers": 2, "maxServers": 0}}))
    assert any("spec.scaling.maxServers" in e and "greater than or equal to 1" in e for e in errors)
    assert any("scaling.minServers must not exceed scaling.maxServers" in e for e in errors)


def test_numbers_are_doubles_in_cel() -> None:
    schema = SPEC["assignment"]
    converted = to_cel({"stopAt": 1, "resumeAt": 0}, schema)
    assert type(converted["stopAt"]).__name__ == "DoubleType"
    assert validate_manifest(_pool({"assignment": {"resumeAt": 0}})) == []


def test_duplicates_in_sets_and_maps() -> None:
    errors = validate_manifest(_pool({"inventory": ["+14155550100", "+14155550101", "+14155550100"]}))
    assert errors == ['spec.inventory[2]: Duplicate value: "+14155550100"']
    server = {
        "apiVersion": API_VERSION,
        "kind": "MessagingServer",
        "metadata": {"name": "s"},
        "spec": {
            "pool": "p",
            "endpoint": "https://s.example",
            "credentialsSecretRef": {"name": "c", "key": "k"},
            "lines": [{"id": "a@b.co"}, {"id": "a@b.co", "role": "Fallback"}],
        },
    }
    assert validate_manifest(server) == ['spec.lines[1]: Duplicate value: {"id": "a@b.co"}']


def test_unknown_kind() -> None:
    errors = validate_manifest({"apiVersion": API_VERSION, "kind": "LinePools", "metadata": {"name": "p"}})
    assert errors and "no CRD" in errors[0]


def test_read_header(tmp_path: Path) -> None:
    path = tmp_path / "case.yaml"
    path.write_text(
        "# A comment.\n# expect: one\n# Expect: two\n\n# transition: true\nkind: X\n# expect: late\n"
    )
    assert read_header(path) == {"expect": ["one", "two"], "transition": ["true"]}


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "quotas": st.fixed_dictionaries(
                {}, optional={"window": st.sampled_from(["Rolling24h", "CalendarDay"])}
            ),
            "scaling": st.fixed_dictionaries({}, optional={"maxServers": st.integers(1, 1000)}),
        },
    )
)
def test_defaulting_is_idempotent(spec: dict[str, Any]) -> None:
    once = apply_defaults(_pool(spec), POOL_SCHEMA)
    assert apply_defaults(once, POOL_SCHEMA) == once


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
