"""The bad manifests the CRD schema cannot reject are rejected by the operator's own checks.

Each file under tests/bad_manifests/operator/ passes the schema (tests/schema asserts that);
here the operator's validation must refuse it and name the field given by ``# expect:``.
The missing-pool case needs the live pool index, so the integration suite covers it.
"""

from pathlib import Path

import pytest

from linepool.api.errors import SpecError
from linepool.api.spec import parse_pool_spec
from linepool.logic.pool import ServerView, find_line_conflicts
from tests.schema.crd_schema import admit_manifest, load_yaml_documents, read_header

CASES = sorted((Path(__file__).resolve().parents[1] / "bad_manifests" / "operator").glob("*.yaml"))


def operator_errors(path: Path) -> list[str]:
    # What the API server would store: schema defaults applied, as the operator would see it.
    documents = [admit_manifest(doc)[0] for doc in load_yaml_documents(path)]
    errors: list[str] = []
    servers = []
    for doc in documents:
        if doc["kind"] == "LinePool":
            try:
                parse_pool_spec(doc["spec"])
            except SpecError as error:
                errors.append(str(error))
        else:
            servers.append(ServerView(name=doc["metadata"]["name"], spec=doc["spec"]))
    errors.extend(find_line_conflicts(servers).values())
    return errors


@pytest.mark.parametrize("path", [p for p in CASES if "pool-missing" not in read_header(p)],
                         ids=lambda p: p.stem)
def test_operator_rejects_what_the_schema_cannot(path: Path) -> None:
    errors = operator_errors(path)
    expected = read_header(path)["expect"]
    assert errors, f"{path.name} was accepted"
    for substring in expected:
        assert any(substring in error for error in errors), (substring, errors)


def test_there_is_a_corpus() -> None:
    assert len(CASES) >= 6
