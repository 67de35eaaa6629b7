"""What goes into an edition: choosing, ordering and shaping stories (pure).

The inputs are article snapshots (the current stored version of each staged
story); the output is the plain data the templates render. Retracted stories
and stories outside the list's sections are left out here, at build time, so a
retraction that arrives after a story was staged still keeps it out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from .. import dates
from .headers import one_line
from .listconfig import subject_template, wants_section

UNSUBSCRIBE_PLACEHOLDER = "@@SYNDICATE-UNSUBSCRIBE-URL@@"


@dataclasses.dataclass(frozen=True)
class Edition:
    """One edition's content: everything the templates and the message need."""

    edition_id: str
    list: dict[str, Any]
    stories: list[dict[str, Any]]
    issued_at: dt.datetime  # aware
    site_url: str

    @property
    def local_time(self) -> dt.datetime:
        return self.issued_at.astimezone(ZoneInfo(self.list["timezone"]))

    @property
    def date_label(self) -> str:
        local = self.local_time
        return f"{local:%A}, {local:%B} {local.day}, {local.year}"

    def sections(self) -> list[str]:
        return list(dict.fromkeys(s["section"] for s in self.stories))

    @property
    def list_name(self) -> str:
        # The schema refuses controls in a list's name; one_line keeps an older stored one inert too.
        return one_line(self.list["name"])

    def variables(self) -> dict[str, Any]:
        """What subject and preheader templates may use."""
        return {
            "list_name": self.list_name,
            "date": self.date_label,
            "count": len(self.stories),
            "top_headline": self.stories[0]["headline"] if self.stories else "",
            "sections": ", ".join(self.sections()),
        }

    def subject(self) -> str:
        # A header is one line: the template's output is made inert like any newsroom text.
        return one_line(subject_template(self.list["subject"]).render(**self.variables()))

    def preheader(self) -> str:
        if self.list.get("preheader"):
            return one_line(subject_template(self.list["preheader"]).render(**self.variables()))
        if not self.stories:
            return ""
        text = " · ".join(s["headline"] for s in self.stories[1:4]) or self.stories[0]["summary"]
        return text if len(text) <= 150 else text[:147].rstrip() + "…"

    def groups(self) -> list[tuple[str | None, list[dict[str, Any]]]]:
        if self.list.get("grouping") != "section":
            return [(None, self.stories)]
        return [(name, [s for s in self.stories if s["section"] == name]) for name in self.sections()]


_RTL_LANGUAGES = {"ar", "arc", "ckb", "dv", "fa", "he", "ks", "ku", "ps", "sd", "ug", "ur", "yi"}


def _lead_image(article: dict[str, Any]) -> dict[str, Any] | None:
    images = article.get("images") or []
    lead = next((i for i in images if i.get("role") == "lead"), images[0] if images else None)
    if not lead:
        return None
    out = {k: one_line(lead.get(k)) or None for k in ("url", "alt", "caption", "credit")}
    out.update({k: lead.get(k) if isinstance(lead.get(k), int) else None for k in ("width", "height")})
    return out


def story(article: dict[str, Any]) -> dict[str, Any]:
    """The part of an article a digest shows, every text made one inert line.

    A digest shows each field as one line or paragraph, so controls and Unicode
    line separators from the newsroom become spaces here, before any template:
    they can then neither break a line of the text part nor reach the HTML.
    """
    looks = article.get("quickLooks") or {}
    language = one_line(article.get("language")) or "en"
    return {
        "id": article["id"],
        "version": article.get("version"),
        "section": one_line(article.get("section")),
        "headline": one_line(article.get("headline")),
        "url": one_line(article.get("url")),
        "summary": one_line(article.get("summary")),
        "published": article.get("datePublished") or "",
        "image": _lead_image(article),
        "quick_looks_title": one_line(looks.get("title")) or "Quick Looks",
        "bullets": [one_line(item) for item in looks.get("items") or []],
        # Each story keeps its own language (and direction) inside an English frame.
        "language": language,
        "rtl": language.split("-")[0].lower() in _RTL_LANGUAGES,
    }


def _epoch(value: str | None) -> float:
    try:
        return dates.timestamp(value or "")
    except dates.DateError:
        return 0.0


def select(config: dict[str, Any], articles: Iterable[dict[str, Any] | None],
           exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Stories for the list: live, in its sections, not already sent, newest first."""
    skip = set(exclude)
    chosen: dict[str, dict[str, Any]] = {}
    for article in articles:
        if not article or article.get("status") == "retracted" or article["id"] in skip:
            continue
        if not wants_section(config, article.get("section")):
            continue
        current = chosen.get(article["id"])
        if current is None or article.get("version", 0) >= current.get("version", 0):
            chosen[article["id"]] = article
    ordered = sorted(chosen.values(), key=lambda a: (_epoch(a.get("datePublished")), a["id"]), reverse=True)
    return [story(a) for a in ordered]
