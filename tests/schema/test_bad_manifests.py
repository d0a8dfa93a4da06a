"""Every file in tests/bad_manifests/ is rejected by the schema, for the reason its header names.

File format: leading comment lines ``# key: value``, then YAML.
- ``# expect: <substring>`` (one or more): each substring must appear in the errors.
- ``# transition: true``: two documents, the stored (old) object first and the update second; the
  update must be rejected only as an update (it is valid as a create).
Otherwise a file holds exactly one LinePool or MessagingServer.

tests/bad_manifests/operator/ holds invalid specs the schema cannot catch (a line on two servers,
an unknown time zone, a zero duration, ...). The operator's own validation rejects those, in its own
tests; here we assert that they *do* pass the schema, so they really are operator-level cases.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .crd_schema import (
    BAD_MANIFESTS_DIR,
    RULE_EVALUATION_ERROR,
    load_yaml_documents,
    read_header,
    validate_manifest,
)

SCHEMA_CASES = sorted(BAD_MANIFESTS_DIR.glob("*.yaml"))
OPERATOR_CASES = sorted((BAD_MANIFESTS_DIR / "operator").glob("*.yaml"))
KINDS = {"LinePool", "MessagingServer"}


def test_there_are_enough_cases() -> None:
    assert len(SCHEMA_CASES) >= 34
    assert len(OPERATOR_CASES) >= 6
    assert not list(BAD_MANIFESTS_DIR.rglob("*.yml")), "use the .yaml extension"


@pytest.mark.parametrize("path", SCHEMA_CASES, ids=lambda p: p.name)
def test_bad_manifest_is_rejected(path: Path) -> None:
    header = read_header(path)
    expected = header.get("expect", [])
    assert expected, f"{path.name}: missing '# expect: <substring>' header"
    docs = load_yaml_documents(path)
    assert all(isinstance(doc, dict) and doc.get("kind") in KINDS for doc in docs), path.name
    if header.get("transition") == ["true"]:
        assert len(docs) == 2, f"{path.name}: a transition case holds the old object, then the new one"
        old, new = docs
        assert validate_manifest(old) == [], f"{path.name}: the old object must be valid"
        assert validate_manifest(new) == [], f"{path.name}: the new object must be valid on its own"
        errors = validate_manifest(new, old=old)
    else:
        assert len(docs) == 1, f"{path.name}: one manifest per file"
        errors = validate_manifest(docs[0])
    assert errors, f"{path.name}: the schema accepted it"
    assert not [e for e in errors if RULE_EVALUATION_ERROR in e], errors
    for substring in expected:
        assert any(substring in error for error in errors), f"{path.name}: {substring!r} not in {errors}"


@pytest.mark.parametrize("path", OPERATOR_CASES, ids=lambda p: p.name)
def test_operator_level_case_passes_the_schema(path: Path) -> None:
    header = read_header(path)
    assert header.get("expect"), f"{path.name}: missing '# expect: <field>' header"
    docs = load_yaml_documents(path)
    assert docs
    for doc in docs:
        assert doc.get("kind") in KINDS, path.name
        errors = validate_manifest(doc)
        assert errors == [], f"{path.name}: the schema already rejects this; move it up a directory: {errors}"
    if header.get("pool-missing") == ["true"]:
        pools = {d["metadata"]["name"] for d in docs if d["kind"] == "LinePool"}
        assert all(d["spec"]["pool"] not in pools for d in docs if d["kind"] == "MessagingServer")
