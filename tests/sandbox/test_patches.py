"""Patch semantics: RFC 7386 merge patches and RFC 6902 JSON patches, as pure functions."""
from typing import Any

import pytest

from linepool.sandbox.patches import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchError,
    PatchTestFailed,
    apply_patch,
    merge_patch,
)

DOC: dict[str, Any] = {'metadata': {'resourceVersion': '7', 'finalizers': ['a', 'b']}, 'spec': {'x': 1, 'y': [1, 2]}}


def test_merge_patch_merges_dicts_replaces_lists_and_deletes_nulls() -> None:
    patched = merge_patch(DOC, {'spec': {'x': None, 'y': [3], 'z': {'k': 'v'}}, 'metadata': {'finalizers': None}})
    assert patched == {'metadata': {'resourceVersion': '7'}, 'spec': {'y': [3], 'z': {'k': 'v'}}}


def test_merge_patch_does_not_modify_its_inputs() -> None:
    patch = {'spec': {'y': [9]}}
    patched = merge_patch(DOC, patch)
    patched['spec']['y'].append(10)
    assert DOC['spec']['y'] == [1, 2]
    assert patch == {'spec': {'y': [9]}}


def test_strategic_merge_patch_behaves_as_merge_patch() -> None:
    patch = {'spec': {'x': 2}}
    assert apply_patch(DOC, patch, STRATEGIC_MERGE_PATCH) == apply_patch(DOC, patch, MERGE_PATCH)


def test_json_patch_applies_when_the_test_holds() -> None:
    ops = [{'op': 'test', 'path': '/metadata/resourceVersion', 'value': '7'},
           {'op': 'remove', 'path': '/metadata/finalizers/0'}]
    assert apply_patch(DOC, ops, JSON_PATCH)['metadata']['finalizers'] == ['b']
    assert DOC['metadata']['finalizers'] == ['a', 'b']


def test_json_patch_with_a_failed_test_is_distinguished() -> None:
    with pytest.raises(PatchTestFailed):
        apply_patch(DOC, [{'op': 'test', 'path': '/metadata/resourceVersion', 'value': '6'}], JSON_PATCH)


@pytest.mark.parametrize('ops', [
    [{'op': 'remove', 'path': '/spec/absent'}],
    [{'op': 'bogus', 'path': '/spec'}],
    [{'path': '/spec'}],
    {'op': 'add'},
])
def test_inapplicable_json_patches_are_patch_errors(ops: Any) -> None:
    with pytest.raises(PatchError):
        apply_patch(DOC, ops, JSON_PATCH)


def test_merge_patch_must_be_an_object() -> None:
    with pytest.raises(PatchError):
        apply_patch(DOC, [1, 2], MERGE_PATCH)
