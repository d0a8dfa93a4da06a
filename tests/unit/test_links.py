"""logic/links.py: deep links, User-Agent platforms, vCards (read back by vobject), QR codes, link detection."""

import re
import xml.etree.ElementTree as ET
from urllib.parse import unquote

import pytest
import segno
import vobject
from hypothesis import given
from hypothesis import strategies as st

from linepool.api.spec import ContactCard
from linepool.logic.links import QR_BORDER, QR_SCALE, DeepLinks, contains_link, deep_links, platform_for, qr_svg, vcard

PHONE = "+15551234567"
EMAIL = "sales-line-01@example.com"

# --- deep links ------------------------------------------------------------------------------------


def test_deep_links_use_the_seeds_format() -> None:
    assert deep_links(line=PHONE, first_message="Hey!") == DeepLinks(
        ios="sms:+15551234567&body=Hey%21", android="sms:+15551234567?body=Hey%21"
    )


@pytest.mark.parametrize(("message", "body"), [
    ("Hi there", "Hi%20there"),  # %20, not +: Messages would show a + literally
    ("A&B?C#D=E+F", "A%26B%3FC%23D%3DE%2BF"),  # nothing in the text can end the body early
    ("50% off/now", "50%25%20off%2Fnow"),
    ("Zoë 👋", "Zo%C3%AB%20%F0%9F%91%8B"),
    ("line1\nline2", "line1%0Aline2"),
])
def test_deep_link_bodies_are_percent_encoded(message: str, body: str) -> None:
    links = deep_links(line=PHONE, first_message=message)
    assert links.ios == f"sms:{PHONE}&body={body}"
    assert links.android == f"sms:{PHONE}?body={body}"


def test_an_email_line_keeps_its_at_sign() -> None:
    links = deep_links(line=EMAIL, first_message="Hey!")
    assert links.ios == f"sms:{EMAIL}&body=Hey%21"
    assert links.android == f"sms:{EMAIL}?body=Hey%21"


@given(st.text(min_size=1, max_size=160))
def test_any_body_decodes_back_to_the_text(message: str) -> None:
    links = deep_links(line=PHONE, first_message=message)
    for link, separator in ((links.ios, "&body="), (links.android, "?body=")):
        recipient, body = link.removeprefix("sms:").split(separator)
        assert recipient == PHONE
        assert not set(body) & set("&?#+ \n")
        assert unquote(body, errors="strict") == message


# --- platforms -------------------------------------------------------------------------------------

USER_AGENTS = [
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Mobile/15E148 Safari/604.1", "ios"),
    ("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Mobile/15E148 Safari/604.1", "ios"),
    ("Mozilla/5.0 (iPod touch; CPU iPhone OS 15_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/15.7 Mobile/15E148 Safari/604.1", "ios"),
    # iPadOS Safari asking for the desktop site: a Macintosh, but Mobile.
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Mobile/15E148 Safari/604.1", "ios"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "CriOS/123.0.6312.52 Mobile/15E148 Safari/604.1", "ios"),
    ("MyApp/2.3 (iOS 17.4; Scale/3.00)", "ios"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/123.0.6312.99 Mobile Safari/537.36", "android"),
    ("Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36", "android"),
    ("Mozilla/5.0 (Android 14; Mobile; rv:124.0) Gecko/124.0 Firefox/124.0", "android"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Safari/605.1.15", "desktop"),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0", "desktop"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/123.0.0.0 Safari/537.36 Edg/123.0.2420.81", "desktop"),
    ("curl/8.5.0", "desktop"),
    ("", "desktop"),
    ("BIOS-update-checker/1.0", "desktop"),
]


@pytest.mark.parametrize(("user_agent", "platform"), USER_AGENTS)
def test_platform_for(user_agent: str, platform: str) -> None:
    assert platform_for(user_agent) == platform


# --- vCards ----------------------------------------------------------------------------------------


def _read(text: str) -> vobject.base.Component:
    return vobject.readOne(text, validate=True)


def _physical_lines(text: str) -> list[str]:
    assert text.endswith("\r\n")
    body = text.removesuffix("\r\n")
    assert "\n" not in body.replace("\r\n", ""), "CRLF line endings only"
    return body.split("\r\n")


def test_a_full_card_for_a_phone_line() -> None:
    card = ContactCard(name="Acme Support", organization="Acme, Inc.",
                       photo_url="https://example.com/logo.png", note="Text us any time.")
    text = vcard(line=PHONE, card=card, pool_name="sales")
    lines = _physical_lines(text)
    assert lines[:2] == ["BEGIN:VCARD", "VERSION:3.0"] and lines[-1] == "END:VCARD"
    assert "TEL;TYPE=CELL:+15551234567" in lines
    assert "PHOTO;VALUE=uri:https://example.com/logo.png" in lines
    assert "ORG:Acme\\, Inc." in lines
    parsed = _read(text)
    assert parsed.version.value == "3.0"
    assert parsed.fn.value == "Acme Support"
    assert parsed.n.value.given == "Acme Support"
    assert parsed.org.value == ["Acme, Inc."]
    assert parsed.photo.value == "https://example.com/logo.png"
    assert parsed.photo.params == {"VALUE": ["uri"]}
    assert parsed.note.value == "Text us any time."
    assert parsed.tel.value == PHONE and parsed.tel.params == {"TYPE": ["CELL"]}
    assert "email" not in parsed.contents


def test_an_email_line_gets_email_not_tel() -> None:
    parsed = _read(vcard(line=EMAIL, card=ContactCard(name="Acme"), pool_name="sales"))
    assert parsed.email.value == EMAIL and parsed.email.params == {"TYPE": ["INTERNET"]}
    assert "tel" not in parsed.contents


def test_without_a_card_the_contact_is_named_after_the_pool() -> None:
    text = vcard(line=PHONE, card=None, pool_name="sales")
    parsed = _read(text)
    assert parsed.fn.value == "sales" and parsed.n.value.given == "sales"
    assert set(parsed.contents) == {"version", "fn", "n", "tel"}


def test_special_characters_are_escaped_and_read_back() -> None:
    name = "Zoë Café; Ana, Bo \\ Co"
    text = vcard(line=PHONE, card=ContactCard(name=name, note="first line\nsecond; third, fourth"),
                 pool_name="sales")
    assert "FN:Zoë Café\\; Ana\\, Bo \\\\ Co" in _physical_lines(text)
    parsed = _read(text)
    assert parsed.fn.value == name and parsed.n.value.given == name
    assert parsed.note.value == "first line\nsecond; third, fourth"


def test_long_values_are_folded_at_75_octets() -> None:
    note = "Ünïcödé " * 120  # 960 characters, about 1,300 octets
    text = vcard(line=PHONE, card=ContactCard(name="Acme", note=note), pool_name="sales")
    lines = _physical_lines(text)
    assert max(len(line.encode()) for line in lines) <= 75
    assert sum(line.startswith(" ") for line in lines) >= 15, "continuation lines start with a space"
    assert _read(text).note.value == note


def test_short_lines_of_multibyte_characters_and_long_photo_urls_are_folded_too() -> None:
    """vobject alone folds neither (a line under 75 characters, PHOTO); the octets count."""
    name = "Zoë Café " * 8  # 72 characters, 88 octets
    url = "https://example.com/" + "p" * 200 + ".png"
    text = vcard(line=PHONE, card=ContactCard(name=name, photo_url=url), pool_name="sales")
    assert max(len(line.encode()) for line in _physical_lines(text)) <= 75
    parsed = _read(text)
    assert (parsed.fn.value, parsed.photo.value) == (name, url)


# Any text but a lone CR, which vCard line breaks turn into a newline.
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), min_size=1, max_size=200)
_CARDS = st.builds(
    ContactCard,
    name=_TEXT,
    organization=st.none() | _TEXT,
    photo_url=st.none() | st.from_regex(r"\Ahttps://[a-z]{1,20}\.example/[A-Za-z0-9_.,;~-]{0,40}\Z"),
    note=st.none() | _TEXT.map(lambda value: value.replace(" ", "\n", 1)),
)


@given(card=_CARDS, line=st.sampled_from([PHONE, EMAIL, "+447700900123", "a.b+c@icloud.com"]))
def test_any_card_reads_back(card: ContactCard, line: str) -> None:
    text = vcard(line=line, card=card, pool_name="sales")
    assert max(len(physical.encode()) for physical in _physical_lines(text)) <= 75
    parsed = _read(text)
    assert parsed.fn.value == card.name and parsed.n.value.given == card.name
    assert (parsed.org.value == [card.organization]) if card.organization else "org" not in parsed.contents
    assert (parsed.photo.value == card.photo_url) if card.photo_url else "photo" not in parsed.contents
    assert (parsed.note.value == card.note) if card.note else "note" not in parsed.contents
    handle = parsed.email if "@" in line else parsed.tel
    assert handle.value == line


# --- QR codes --------------------------------------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"
_STROKE = re.compile(r"([Mmh])(-?[0-9.]+)(?: (-?[0-9.]+))?")


def _dark_modules(svg: str) -> set[tuple[int, int]]:
    """The (row, column) of every dark module drawn by segno's path (rows of 1-unit-wide strokes)."""
    root = ET.fromstring(svg)
    (path,) = [p for p in root.iter(f"{SVG}path") if p.get("stroke")]
    x = y = 0.0
    dark = set()
    for command, first, second in _STROKE.findall(path.get("d", "")):
        if command == "M":
            x, y = float(first), float(second)
        elif command == "m":
            x, y = x + float(first), y + float(second)
        else:
            row = int(y - 0.5) - QR_BORDER
            dark.update((row, int(x) - QR_BORDER + i) for i in range(int(first)))
            x += float(first)
    return dark


@pytest.mark.parametrize("url", [
    "https://place.example.com/l/abc123",
    "https://placement.linepool.example/v1/l/" + "x" * 200,
])
def test_qr_svg_is_an_svg_of_the_url(url: str) -> None:
    svg = qr_svg(url=url)
    assert not svg.startswith("<?xml")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    expected = segno.make_qr(url, error="m")
    modules = len(expected.matrix)
    side = (modules + 2 * QR_BORDER) * QR_SCALE
    assert (root.get("width"), root.get("height")) == (str(side), str(side))
    paths = list(root.iter(f"{SVG}path"))
    assert {p.get("fill") for p in paths if p.get("fill")} == {"#fff"}
    assert {p.get("stroke") for p in paths if p.get("stroke")} == {"#000"}
    drawn = _dark_modules(svg)
    assert drawn == {(r, c) for r, row in enumerate(expected.matrix) for c, bit in enumerate(row) if bit}
    assert not expected.is_micro, "phone cameras read full QR codes only"
    assert qr_svg(url=url) == svg, "deterministic"


@given(st.from_regex(r"\Ahttps://[a-z0-9.-]{1,30}/[A-Za-z0-9/_-]{0,60}\Z"))
def test_any_url_renders_its_own_matrix(url: str) -> None:
    expected = segno.make_qr(url, error="m")
    assert _dark_modules(qr_svg(url=url)) == {
        (r, c) for r, row in enumerate(expected.matrix) for c, bit in enumerate(row) if bit
    }


# --- link detection --------------------------------------------------------------------------------

TEXTS = [
    ("Hey!", False),
    ("Hi, I'm Ana", False),
    ("e.g. this", False),
    ("i.e. that, etc.", False),
    ("3.14 is pi", False),
    ("Mr. Smith", False),
    ("Dr. Who at 5 p.m.", False),
    ("ok.me too", False),  # a missing space after a full stop is not a link
    ("Awww. Thanks!", False),
    ("U.S. only", False),
    ("Version 1.2.3/4", False),
    ("and/or", False),
    ("Lunch at 12:30?", False),
    ("see https://x.y", True),
    ("http://localhost", True),
    ("ftp://files", True),
    ("www.example.com", True),
    ("go to WWW.foo", True),
    ("example.com/path", True),
    ("bit.ly/abc", True),
    ("example.com", True),
    ("Visit Example.COM today", True),
    ("see t.co/x", True),
    ("write to ana@example.org", True),
    ("shop at acme.co.uk!", True),
    ("my-site.io", True),
]


@pytest.mark.parametrize(("text", "link"), TEXTS)
def test_contains_link(text: str, link: bool) -> None:
    assert contains_link(text) is link
