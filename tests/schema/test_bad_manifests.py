"""Every file in tests/bad_manifests/ is refused by the genuine API server, for the reason it names.

File format (tests/bad_manifests/README.md): leading comment lines ``# key: value``, then YAML.
- ``# expect: <substring>`` (one or more): each must appear in the server's error message.
- ``# transition: true``: two documents, the stored (old) object first and the update second. The
  old one is created for real, the new one is accepted as a create, and the update is refused.
- ``# field-validation: Strict``: refused only when the client asks for strict field validation,
  as kubectl does by default (400 "strict decoding error"); the server's own default accepts the
  object and silently drops the unknown field, and this test asserts that too.
Otherwise a case is refused with 422 Unprocessable whatever the client's field validation.

Also: every ``x-kubernetes-validations`` rule in crds/ has a case expecting its message, and every
transition rule (``oldSelf``) a transition case, so a new rule without a case fails here.
tests/bad_manifests/operator/ (specs only the operator can reject) is test_operator_cases.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from linepool.sandbox.kubeapi import KubeApiError, KubeApiServer

from .admission import create, in_namespace
from .crd_files import (
    BAD_MANIFESTS_DIR,
    iter_validation_rules,
    load_crds,
    load_yaml_documents,
    read_header,
    rule_message,
)

SCHEMA_CASES = sorted(BAD_MANIFESTS_DIR.glob("*.yaml"))
OPERATOR_CASES = sorted((BAD_MANIFESTS_DIR / "operator").glob("*.yaml"))
KINDS = {"LinePool", "MessagingServer"}
HEADER_KEYS = {"expect", "transition", "field-validation"}
# A CEL rule that fails to run (rather than to hold) is a bug in the rule, whatever it was given.
RULE_FAILURES = ("Internal error", "evaluating rule", "compilation failed")


def _refused(action: Any, what: str) -> KubeApiError:
    try:
        action()
    except KubeApiError as error:
        return error
    pytest.fail(f"the server accepted {what}")


def _unknown_field_paths(header: dict[str, list[str]]) -> list[list[str]]:
    """``unknown field "spec.scalling"`` expectations, as paths: what the server drops without Strict."""
    paths = []
    for expected in header.get("expect", []):
        if expected.startswith('unknown field "'):
            paths.append(expected.split('"')[1].split("."))
    return paths


def _has_path(obj: Any, path: list[str]) -> bool:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return False
        obj = obj[part]
    return True


def test_there_are_enough_cases() -> None:
    assert len(SCHEMA_CASES) >= 34
    assert len(OPERATOR_CASES) >= 6
    assert not list(BAD_MANIFESTS_DIR.rglob("*.yml")), "use the .yaml extension"


@pytest.mark.parametrize("path", SCHEMA_CASES, ids=lambda p: p.name)
def test_bad_manifest_is_refused(kube: KubeApiServer, namespace: str, path: Path) -> None:
    header = read_header(path)
    expected = header.get("expect", [])
    assert expected, f"{path.name}: missing '# expect: <substring>' header"
    assert set(header) <= HEADER_KEYS, f"{path.name}: unknown header keys {set(header) - HEADER_KEYS}"
    docs = [in_namespace(doc, namespace) for doc in load_yaml_documents(path)]
    assert all(isinstance(doc, dict) and doc.get("kind") in KINDS for doc in docs), path.name
    strict = header.get("field-validation") == ["Strict"]
    if header.get("transition") == ["true"]:
        assert len(docs) == 2, f"{path.name}: a transition case holds the old object, then the new one"
        old, new = docs
        stored = create(kube, old, dry_run=False)
        renamed = {**new, "metadata": {**new["metadata"], "name": new["metadata"]["name"] + "-new"}}
        create(kube, renamed)  # raises if the new object is invalid on its own
        new["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
        error = _refused(lambda: kube.replace(new), f"{path.name} as an update")
    else:
        assert len(docs) == 1, f"{path.name}: one manifest per file"
        error = _refused(lambda: create(kube, docs[0], strict=strict), path.name)
    assert error.status == (400 if strict else 422), f"{path.name}: {error}"
    assert not [f for f in RULE_FAILURES if f in error.message], f"{path.name}: a rule failed to run: {error.message}"
    for substring in expected:
        assert substring in error.message, f"{path.name}: {substring!r} not in {error.message!r}"
    if strict:
        # Without strict validation the server accepts the object, minus the field: the typo vanishes.
        stored = create(kube, docs[0], strict=False)
        unknown = _unknown_field_paths(header)
        assert unknown, f"{path.name}: a field-validation case expects 'unknown field \"...\"'"
        assert not [p for p in unknown if _has_path(stored, p)], f"{path.name}: the unknown field was kept"


def test_field_validation_cases_are_the_unknown_field_cases() -> None:
    """Only an unknown field depends on the client's field validation; every other case does not."""
    for path in SCHEMA_CASES:
        header = read_header(path)
        assert (header.get("field-validation") == ["Strict"]) == bool(_unknown_field_paths(header)), path.name


# --------------------------------------------------------------------------------------------------
# Every CEL rule has a case
# --------------------------------------------------------------------------------------------------

RULES = [
    (crd.name, path, rule)
    for crd in load_crds()
    for version in crd.versions
    for path, _, rule in iter_validation_rules(crd.schema(version["name"]))
]
MESSAGES = [rule_message(rule) for _, _, rule in RULES]
MIN_PHRASE_WORDS = 4


def _cases_expecting(message: str) -> list[Path]:
    """Cases expecting a phrase of ``message`` (four words or more) that no other rule's message has.

    A phrase, not a bare field path: ``spec.pool`` is also part of the pool-name rule's message.
    """
    found = []
    for path in SCHEMA_CASES:
        for expected in read_header(path).get("expect", []):
            owners = [m for m in MESSAGES if expected in m]
            if len(expected.split()) >= MIN_PHRASE_WORDS and owners == [message]:
                found.append(path)
                break
    return found


def test_there_are_rules_to_cover() -> None:
    assert len(RULES) >= 13
    assert all(MESSAGES), "every rule has a message (a messageExpression would not be matched here)"
    assert len(set(MESSAGES)) == len(MESSAGES), "two rules with one message cannot be told apart"


@pytest.mark.parametrize(("crd_name", "path", "rule"), RULES, ids=[f"{c}:{p}:{r['rule'][:40]}" for c, p, r in RULES])
def test_every_rule_has_a_bad_manifest(crd_name: str, path: str, rule: dict[str, Any]) -> None:
    cases = _cases_expecting(rule_message(rule))
    assert cases, (f"{crd_name} {path}: no case in tests/bad_manifests/ expects {rule_message(rule)!r}; "
                   "add one that the rule refuses")
    if "oldSelf" in rule["rule"]:
        transitions = [c for c in cases if read_header(c).get("transition") == ["true"]]
        assert transitions, f"{crd_name} {path}: a transition rule needs a '# transition: true' case"
