"""spec.contactCard and spec.placement on the genuine API server: its defaults, and that it refuses
exactly the values that the operator's parser refuses (RE2 and Python's re reading the same patterns).
"""

from __future__ import annotations

from typing import Any

import pytest

from linepool.api.errors import SpecError
from linepool.api.spec import PlacementSettings, parse_pool_spec
from linepool.sandbox.kubeapi import KubeApiServer
from tests.unit.test_links import TEXTS

from .admission import causes, create, in_namespace, refusal

METRICS = {"prometheusURL": "http://p:9090"}


def _pool(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "linepool.dev/v1alpha1", "kind": "LinePool", "metadata": {"name": "p"},
            "spec": {"metrics": dict(METRICS), **spec}}


def _server_refuses(kube: KubeApiServer, namespace: str, pool: dict[str, Any], field: str) -> bool:
    error = refusal(kube, pool, namespace=namespace)
    if error is None:
        return False
    assert [where for where, _ in causes(error)] == [field], error
    return True


def _parser_refuses(pool: dict[str, Any], field: str) -> bool:
    try:
        parse_pool_spec(pool["spec"])
    except SpecError as error:
        assert error.field == field
        return True
    return False


def test_placement_defaults_are_stored_and_read_as_the_parsers(kube: KubeApiServer, dry_run_namespace: str) -> None:
    stored = create(kube, in_namespace(_pool(), dry_run_namespace))
    assert stored["spec"]["placement"] == {"firstMessage": "Hey!"}
    assert "contactCard" not in stored["spec"]
    parsed = parse_pool_spec(stored["spec"])
    assert (parsed.placement, parsed.contact_card) == (PlacementSettings(), None)


# The link table of the unit tests, and texts near the edges of the pattern's branches.
FIRST_MESSAGES = [text for text, _ in TEXTS] + [
    "HTTPS://ACME.EXAMPLE", "awww.", "www", "a.b", "a.bc", "a.bc/", "x.COM", "x.community", "x.com-ish",
    "x.com\nnext", "ｗｗｗ.example", "Kelvin.\u212a", "tab\t.com", "x.c\u043em",
]


@pytest.mark.parametrize("text", FIRST_MESSAGES)
def test_server_and_parser_agree_on_links(kube: KubeApiServer, dry_run_namespace: str, text: str) -> None:
    pool = _pool(placement={"firstMessage": text})
    field = "spec.placement.firstMessage"
    assert _server_refuses(kube, dry_run_namespace, pool, field) == _parser_refuses(pool, field)


PHOTO_URLS = [
    "https://cdn.acme.example/logo.png", "https://a", "https://a?x=1", "https://a#top", "https://a/b,c;d~e",
    "https://user@a:8443/p", "https://é.example/ü.png", "http://a/logo.png", "HTTPS://a/logo.png", "https://",
    "https:///logo.png", "https://a/our logo.png", "https://a/logo.png\n", "https://a/\tx", "https://a/\vx",
    "https://a/\u00a0x", "https://a/\u2003x", "ftp://a", "//a/logo.png", " https://a",
]


@pytest.mark.parametrize("url", PHOTO_URLS)
def test_server_and_parser_agree_on_photo_urls(kube: KubeApiServer, dry_run_namespace: str, url: str) -> None:
    pool = _pool(contactCard={"name": "Acme", "photoURL": url})
    field = "spec.contactCard.photoURL"
    assert _server_refuses(kube, dry_run_namespace, pool, field) == _parser_refuses(pool, field)
