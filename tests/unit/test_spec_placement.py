"""Spec parsing of spec.contactCard and spec.placement: defaults, limits and links, as the CRD states them."""

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linepool.api.errors import SpecError
from linepool.api.spec import (
    DEFAULT_FIRST_MESSAGE,
    HTTPS_URL,
    MAX_CARD_NAME,
    MAX_CARD_NOTE,
    MAX_CARD_ORGANIZATION,
    MAX_FIRST_MESSAGE,
    MAX_PHOTO_URL,
    ContactCard,
    PlacementSettings,
    parse_pool_spec,
)
from linepool.api.text import LINK_PATTERN, contains_link
from tests.schema.crd_files import crd_named

METRICS = {"prometheusURL": "http://prometheus:9090"}
SPEC = crd_named("linepools.linepool.dev").schema("v1alpha1")["properties"]["spec"]["properties"]
CARD = SPEC["contactCard"]
PLACEMENT = SPEC["placement"]


def pool(**sections: object) -> dict[str, object]:
    return {"metrics": dict(METRICS), **sections}


def card(**fields: object) -> dict[str, object]:
    return pool(contactCard={"name": "Acme Support", **fields})


def first_message(text: object) -> dict[str, object]:
    return pool(placement={"firstMessage": text})


# --- defaults and valid values ---------------------------------------------------------------------


@pytest.mark.parametrize("raw", [pool(), pool(contactCard=None), pool(placement={}), pool(placement=None),
                                 first_message(None)])
def test_absent_sections_get_the_defaults(raw: dict[str, object]) -> None:
    spec = parse_pool_spec(raw)
    assert spec.contact_card is None
    assert spec.placement == PlacementSettings() == PlacementSettings(first_message="Hey!")


def test_a_full_card() -> None:
    spec = parse_pool_spec(card(organization="Acme, Inc.", photoURL="https://cdn.acme.example/logo.png?v=2",
                                note="Text us any time.\nWe answer within the hour."))
    assert spec.contact_card == ContactCard(
        name="Acme Support", organization="Acme, Inc.", photo_url="https://cdn.acme.example/logo.png?v=2",
        note="Text us any time.\nWe answer within the hour.",
    )


def test_a_card_with_only_a_name() -> None:
    assert parse_pool_spec(card()).contact_card == ContactCard(
        name="Acme Support", organization=None, photo_url=None, note=None
    )


@pytest.mark.parametrize("text", [
    "Hi there", "Hi, I'm Ana 👋", "e.g. a quote for 3.14 kg, Mr. Smith?", "x" * MAX_FIRST_MESSAGE, "Zoë",
])
def test_valid_first_messages(text: str) -> None:
    assert parse_pool_spec(first_message(text)).placement.first_message == text


@pytest.mark.parametrize(("field", "limit"), [
    ("name", MAX_CARD_NAME), ("organization", MAX_CARD_ORGANIZATION), ("note", MAX_CARD_NOTE),
])
def test_card_texts_up_to_their_limit_in_characters(field: str, limit: int) -> None:
    value = "é" * limit  # characters, not octets, as the API server counts maxLength
    parsed = parse_pool_spec(pool(contactCard={"name": "Acme", field: value})).contact_card
    assert parsed is not None and getattr(parsed, field) == value


def test_a_photo_url_up_to_its_limit() -> None:
    url = "https://acme.example/" + "p" * (MAX_PHOTO_URL - len("https://acme.example/"))
    parsed = parse_pool_spec(card(photoURL=url)).contact_card
    assert parsed is not None and parsed.photo_url == url


# --- bad values name their field -------------------------------------------------------------------

BAD: list[tuple[dict[str, Any], str, str]] = [
    (pool(contactCard="Acme"), "spec.contactCard", "must be an object"),
    (pool(contactCard={}), "spec.contactCard.name", "is required"),
    (pool(contactCard={"name": None, "note": "x"}), "spec.contactCard.name", "is required"),
    (pool(contactCard={"name": ""}), "spec.contactCard.name", "non-empty"),
    (pool(contactCard={"name": 7}), "spec.contactCard.name", "non-empty text"),
    (pool(contactCard={"name": "x" * (MAX_CARD_NAME + 1)}), "spec.contactCard.name", "at most 128 characters"),
    (card(organization="x" * (MAX_CARD_ORGANIZATION + 1)), "spec.contactCard.organization", "at most 128"),
    (card(organization=["Acme"]), "spec.contactCard.organization", "non-empty text"),
    (card(note="x" * (MAX_CARD_NOTE + 1)), "spec.contactCard.note", "at most 1024"),
    (card(photoURL="http://acme.example/logo.png"), "spec.contactCard.photoURL", "https:// URL"),
    (card(photoURL="HTTPS://acme.example/logo.png"), "spec.contactCard.photoURL", "https:// URL"),
    (card(photoURL="https://"), "spec.contactCard.photoURL", "https:// URL"),
    (card(photoURL="https:///logo.png"), "spec.contactCard.photoURL", "https:// URL"),
    (card(photoURL="https://acme.example/our logo.png"), "spec.contactCard.photoURL", "https:// URL"),
    (card(photoURL="https://acme.example/logo.png\n"), "spec.contactCard.photoURL", "https:// URL"),
    (card(photoURL="acme.example/logo.png"), "spec.contactCard.photoURL", "https:// URL"),
    (card(photoURL="https://a.example/" + "p" * MAX_PHOTO_URL), "spec.contactCard.photoURL", "at most 2048"),
    (pool(placement="Hey!"), "spec.placement", "must be an object"),
    (first_message(""), "spec.placement.firstMessage", "non-empty"),
    (first_message(42), "spec.placement.firstMessage", "non-empty text"),
    (first_message("x" * (MAX_FIRST_MESSAGE + 1)), "spec.placement.firstMessage", "at most 160 characters"),
    (first_message("Hey! https://acme.example/start"), "spec.placement.firstMessage", "Apple suppresses links"),
    (first_message("Hi www.acme.example"), "spec.placement.firstMessage", "text only"),
    (first_message("Hi Acme.com"), "spec.placement.firstMessage", "text only"),
    (first_message("Hey! bit.ly/acme"), "spec.placement.firstMessage", "text only"),
]


@pytest.mark.parametrize(("spec", "field", "reason"), BAD)
def test_bad_values_name_their_field(spec: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_pool_spec(spec)
    assert caught.value.field == field
    assert reason in caught.value.reason


@given(st.text(min_size=1, max_size=MAX_FIRST_MESSAGE))
def test_a_first_message_is_refused_exactly_when_it_holds_a_link(text: str) -> None:
    try:
        parse_pool_spec(first_message(text))
    except SpecError as error:
        assert error.field == "spec.placement.firstMessage" and contains_link(text)
    else:
        assert not contains_link(text)


# --- the CRD states the same rules ----------------------------------------------------------------


def _rules(node: dict[str, Any]) -> list[str]:
    return [rule["rule"] for rule in node.get("x-kubernetes-validations", [])]


def test_the_crd_limits_are_the_parsers() -> None:
    fields = CARD["properties"]
    assert CARD["required"] == ["name"]
    assert (fields["name"]["minLength"], fields["name"]["maxLength"]) == (1, MAX_CARD_NAME)
    assert fields["organization"]["maxLength"] == MAX_CARD_ORGANIZATION
    assert fields["photoURL"]["maxLength"] == MAX_PHOTO_URL
    assert fields["note"]["maxLength"] == MAX_CARD_NOTE
    message = PLACEMENT["properties"]["firstMessage"]
    assert (message["minLength"], message["maxLength"]) == (1, MAX_FIRST_MESSAGE)
    assert message["default"] == DEFAULT_FIRST_MESSAGE
    assert PLACEMENT["default"] == {}
    assert "default" not in CARD, "no card unless one is given"


def test_the_crd_link_rule_is_the_one_link_pattern() -> None:
    """The server refuses the same first messages as contains_link: the CEL rule holds LINK_PATTERN verbatim."""
    assert "\\" not in LINK_PATTERN and "'" not in LINK_PATTERN, "it must read the same inside a CEL literal"
    assert _rules(PLACEMENT["properties"]["firstMessage"]) == [f"!self.matches('{LINK_PATTERN}')"]


def test_the_crd_photo_url_rule_is_the_parsers() -> None:
    (rule,) = _rules(CARD["properties"]["photoURL"])
    literal = re.fullmatch(r"self\.matches\('\^(.*)\$'\)", rule)
    assert literal is not None, rule
    # A CEL literal writes the regex's backslash as '\\'.
    assert literal.group(1).replace("\\\\", "\\") == HTTPS_URL.pattern
