"""HTTP conditional-request rules for serving feeds (RFC 9110 §13), pure.

``If-None-Match`` wins over ``If-Modified-Since`` when both are sent; ETags
compare weakly (a ``W/`` prefix is ignored), which is what GET/HEAD require.
"""

from __future__ import annotations

import email.utils


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def not_modified(if_none_match: str | None, if_modified_since: str | None, etag: str, last_modified: str) -> bool:
    if if_none_match is not None:
        wanted = {_opaque(t) for t in if_none_match.split(",") if t.strip()}
        return "*" in wanted or _opaque(etag) in wanted
    if if_modified_since:
        try:
            since = email.utils.parsedate_to_datetime(if_modified_since)
            modified = email.utils.parsedate_to_datetime(last_modified)
        except (TypeError, ValueError, IndexError):
            return False  # an unparseable date is ignored, as the RFC says
        if since.tzinfo is None or modified.tzinfo is None:
            return False
        return modified <= since
    return False


def link_header(self_url: str, hub: str | None) -> str | None:
    """WebSub discovery (``Link: <hub>; rel="hub", <topic>; rel="self"``) when a hub is configured."""
    if not hub:
        return None
    return f'<{hub}>; rel="hub", <{self_url}>; rel="self"'
