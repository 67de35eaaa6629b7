"""Text hygiene for feeds: XML-safe characters and URL-safe section slugs (pure).

XML 1.0 forbids most C0 control characters, lone surrogates and U+FFFE/U+FFFF;
lxml refuses them outright and readers choke on them, so every string that goes
into a document passes through ``clean`` first. DEL and the C1 controls are
legal XML but never news text, and feed validators flag them, so they go too.

Escaping for XML is left to the serialisers (lxml, ``json``). ``html_text`` is
for the places where a reader treats text as HTML (RSS titles, descriptions,
categories, Media RSS; our own content HTML): there text is HTML-escaped first,
so markup a newsroom typed arrives as the characters it typed.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata

# Everything XML 1.0 does not allow in character data (tab, LF and CR are fine), plus DEL and C1.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_NON_SLUG = re.compile(r"[^a-z0-9]+")
SLUG_MAX = 60


def clean(value: str | None) -> str:
    """``value`` without XML-invalid characters ("" for None)."""
    if not value:
        return ""
    return _XML_INVALID.sub("", value)


def html_text(value: object, quote: bool = False) -> str:
    """``value`` cleaned and HTML-escaped ("" for None); ``quote`` also escapes quotes, for attributes."""
    return html.escape(clean(str(value)) if value is not None else "", quote=quote)


def slugify(section: str) -> str:
    """A stable, lowercase ``[a-z0-9-]`` name for a section, safe in URLs and file names.

    Accents fold to ASCII ("Économie" -> "economie"). Text with no ASCII letters
    or digits at all ("日本") gets a short hash, so it still has a stable name;
    over-long names are cut and suffixed with a hash so two long sections that
    share a prefix do not collide.
    """
    text = unicodedata.normalize("NFKD", clean(section)).encode("ascii", "ignore").decode("ascii")
    slug = _NON_SLUG.sub("-", text.lower()).strip("-")
    digest = hashlib.sha256(section.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    if not slug:
        return f"section-{digest}"
    if len(slug) > SLUG_MAX:
        return f"{slug[:SLUG_MAX - 9].rstrip('-')}-{digest}"
    return slug
