"""The content of a placement answer: deep links, the platform of a User-Agent, the vCard, the QR code.

Pure functions, no I/O: the placement service calls them with a line id and the pool's settings and
serves what they return. Link detection in a first message is :func:`contains_link`, defined in
``linepool.api.text`` (the spec parser needs it too, and ``api`` may not import ``logic``).
"""

import io
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

import segno
import vobject

from linepool.api.spec import ContactCard
from linepool.api.text import contains_link

__all__ = ["DeepLinks", "Platform", "contains_link", "deep_links", "platform_for", "qr_svg", "vcard"]

Platform = Literal["ios", "android", "desktop"]

# Case-sensitive on purpose: "iOS" (also inside Chrome's "CriOS"), not "bios". iPadOS Safari asks
# for desktop pages with a Macintosh User-Agent, but keeps "Mobile" in it.
_IOS = re.compile(r"iPhone|iPad|iPod|iOS|Macintosh.*Mobile")
_ANDROID = re.compile(r"Android")
# What a line id may keep literal in an sms: URI: the + of an E.164 number, the @ of an Apple ID.
_LINE_SAFE = "+@"
# A QR code's quiet zone is 4 modules by the standard; 8 px per module is readable by a phone
# camera from a screen at arm's length (about 300 px for a short URL).
# vCard lines: at most 75 octets each, CRLF excluded; vobject folds nothing below _UNFOLDED.
FOLD_OCTETS = 75
_UNFOLDED = 1 << 30
QR_SCALE = 8
QR_BORDER = 4


@dataclass(frozen=True, kw_only=True)
class DeepLinks:
    """The sms: links that open the user's Messages app on the line, with the opener filled in."""

    ios: str
    android: str


def deep_links(*, line: str, first_message: str) -> DeepLinks:
    """The iOS and Android ``sms:`` links to ``line`` with ``first_message`` as the body.

    iOS reads the body after ``&`` (the seed's ``sms:+15551234567&body=Hey%21``), Android after
    ``?``. The body is percent-encoded with nothing left safe, so a space is %20 (``+`` would show
    up literally in the Messages app) and no ``&``, ``?`` or ``#`` of the text can cut the URI.
    """
    recipient = quote(line, safe=_LINE_SAFE)
    body = quote(first_message, safe="")
    return DeepLinks(ios=f"sms:{recipient}&body={body}", android=f"sms:{recipient}?body={body}")


def platform_for(user_agent: str) -> Platform:
    """Which deep link a browser with this User-Agent should be sent to; ``desktop`` gets the QR code."""
    if _IOS.search(user_agent):
        return "ios"
    if _ANDROID.search(user_agent):
        return "android"
    return "desktop"


def _is_email(line: str) -> bool:
    # Line ids are E.164 numbers or Apple ID emails (api/spec.py LINE_ID); only the email has an @.
    return "@" in line


def vcard(*, line: str, card: ContactCard | None, pool_name: str) -> str:
    """A vCard 3.0 of ``line``, importable on iOS and Android.

    vobject escapes ``,``, ``;``, ``\\`` and newlines in text values and ends lines with CRLF; the
    lines are folded here at 75 octets. Without a card, the contact is named after the pool.
    """
    name = card.name if card is not None else pool_name
    contact = vobject.vCard()
    contact.add("fn").value = name
    # N is required in 3.0. The whole name goes into one component: a pool's name is a brand more
    # often than a person's, and splitting it into given and family names would be a guess.
    contact.add("n").value = vobject.vcard.Name(given=name)
    if card is not None:
        if card.organization is not None:
            contact.add("org").value = [card.organization]
        if card.photo_url is not None:
            photo = contact.add("photo")
            photo.value = card.photo_url
            photo.value_param = "uri"
        if card.note is not None:
            contact.add("note").value = card.note
    if _is_email(line):
        address = contact.add("email")
        address.value = line
        address.type_param = "INTERNET"
    else:
        number = contact.add("tel")
        number.value = line
        number.type_param = "CELL"
    # vobject folds only lines of 75 characters or more (a shorter line of multi-byte characters
    # can still pass 75 octets) and never folds PHOTO; so it writes logical lines, folded here.
    logical: str = contact.serialize(lineLength=_UNFOLDED)
    return "".join(_fold(line) + "\r\n" for line in logical.removesuffix("\r\n").split("\r\n"))


def _fold(line: str) -> str:
    """``line`` as physical lines of at most 75 octets (RFC 2425 5.8.1), never inside a UTF-8 character."""
    pieces, piece, size = [], "", 0
    for char in line:
        octets = len(char.encode("utf-8"))
        if size + octets > FOLD_OCTETS:
            pieces.append(piece)
            piece, size = " ", 1  # a continuation line starts with one space, which unfolding drops
        piece += char
        size += octets
    pieces.append(piece)
    return "\r\n".join(pieces)


def qr_svg(*, url: str) -> str:
    """An SVG QR code of ``url``, black modules on white, without an XML declaration (for inlining)."""
    # make_qr, not make: segno would pick a Micro QR for a short text, which phone cameras do not read.
    code = segno.make_qr(url, error="m")
    buffer = io.BytesIO()
    code.save(buffer, kind="svg", scale=QR_SCALE, border=QR_BORDER, dark="#000", light="#fff", xmldecl=False)
    return buffer.getvalue().decode("utf-8")
