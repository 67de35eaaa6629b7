"""Text hygiene for feeds: XML-safe characters and URL-safe section slugs (pure).

XML 1.0 forbids most C0 control characters, lone surrogates and U+FFFE/U+FFFF;
lxml refuses them outright and readers choke on them, so every string that goes
into a document passes through ``clean`` first. Escaping markup is left to the
serialisers (lxml, ``html.escape``, ``json``), which never trust text.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Everything XML 1.0 does not allow in character data (tab, LF and CR are fine).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NON_SLUG = re.compile(r"[^a-z0-9]+")
SLUG_MAX = 60


def clean(value: str | None) -> str:
    """``value`` without XML-invalid characters ("" for None)."""
    if not value:
        return ""
    return _XML_INVALID.sub("", value)


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
