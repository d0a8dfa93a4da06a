"""
Patch semantics of the Kubernetes API, as pure functions over JSON-like dicts.

The sandbox API server applies PATCH bodies with these, chosen by ``Content-Type``:

* ``application/merge-patch+json`` — RFC 7386: dicts merge recursively, ``null`` deletes
  a key, and lists (and every other value) are replaced as a whole;
* ``application/strategic-merge-patch+json`` — treated as a merge patch. A real server
  merges some lists by key (e.g. containers by name) and honours ``$patch`` directives;
  custom resources never get that treatment, so for our CRDs the result is the same;
* ``application/json-patch+json`` — RFC 6902 via the ``jsonpatch`` library. kopf guards
  its finalizer patches with a ``test`` op on ``/metadata/resourceVersion`` and relies on
  a failed test being reported as 422, so failures are classified here.
"""
import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch

MERGE_PATCH = 'application/merge-patch+json'
STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json'
JSON_PATCH = 'application/json-patch+json'
APPLY_PATCH = 'application/apply-patch+yaml'
SUPPORTED_PATCH_TYPES = frozenset({MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH})


class PatchError(ValueError):
    """A patch that cannot be applied; the API server answers 422 Unprocessable Entity."""


class PatchTestFailed(PatchError):
    """A JSON-patch ``test`` op did not hold: the optimistic-concurrency signal for clients."""


def merge_patch(target: Any, patch: Any) -> Any:
    """
    Apply an RFC 7386 JSON merge patch and return the new document.

    Neither argument is modified: the result shares no mutable parts with the inputs,
    so the caller can store it as a new version while older versions stay intact.
    """
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(document: Mapping[str, Any], operations: Any) -> dict[str, Any]:
    """
    Apply an RFC 6902 JSON patch and return the new document (the input is not modified).

    Raises :class:`PatchTestFailed` for a failed ``test`` op and :class:`PatchError`
    for anything else that makes the patch inapplicable (bad ops, missing paths, …).
    """
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    try:
        patch = jsonpatch.JsonPatch(operations)
        result = patch.apply(copy.deepcopy(dict(document)), in_place=True)
    except jsonpatch.JsonPatchTestFailed as e:
        raise PatchTestFailed(str(e)) from e
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, TypeError) as e:
        raise PatchError(str(e) or type(e).__name__) from e
    if not isinstance(result, dict):
        raise PatchError("a JSON patch must leave an object at the document root")
    return result


def apply_patch(document: Mapping[str, Any], body: Any, content_type: str) -> dict[str, Any]:
    """Apply a PATCH body of the given (already normalised) content type."""
    if content_type == JSON_PATCH:
        return json_patch(document, body)
    if content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        if not isinstance(body, Mapping):
            raise PatchError("a merge patch must be a JSON object")
        result = merge_patch(document, body)
        assert isinstance(result, dict)  # a mapping patch always produces a dict
        return result
    raise ValueError(f"unsupported patch type: {content_type!r}")  # the caller maps it to 415
