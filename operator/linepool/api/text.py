"""What counts as a link in a text a user sends: the one definition for the CRD, the parser and the service.

Apple suppresses links in a conversation until the other side has replied, so the first message of
an inbound-first conversation (``spec.placement.firstMessage``, or the one an app sends to the
placement service) must be text only. :data:`LINK_PATTERN` is written once here and copied verbatim
into the CRD's CEL rule (a test checks the copy), so the API server and the operator refuse the
same texts.
"""

import re

# RE2 (CEL's matches()) and Python's re read this pattern alike: no backslashes (so it survives a
# CEL string literal unchanged), no '.' wildcard, and '$'/'^' only next to a class that already
# matches a newline. Branches: any scheme (://); www. as a word; a dotted name followed by a path
# (bit.ly/x, example.com/path); a dotted name ending in a common top-level domain (example.com).
# The TLD list leaves out English words (to, me, at, in, it, be, us) so that a missing space after
# a full stop ("ok.me too") is not a link; "e.g.", "Mr. Smith" and "3.14" never match.
LINK_PATTERN = (
    "(?i)(://"
    "|(^|[^a-z0-9])www[.]"
    "|[a-z0-9][.][a-z]{2,}/"
    "|[a-z0-9][.](com|net|org|io|co|ly|gl|gd|app|dev|ai|info|biz|xyz|link|page|site|online|shop"
    "|uk|de|fr|ca|au|ru|cn|jp|tv|gg)($|[^a-z0-9]))"
)
_LINK = re.compile(LINK_PATTERN)


def contains_link(text: str) -> bool:
    """Whether ``text`` holds a URL or something a phone would turn into a link (a bare domain)."""
    return _LINK.search(text) is not None
