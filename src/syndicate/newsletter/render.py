"""Render an edition to HTML (CSS inlined) and plain text (pure).

Gmail clips an HTML body past 102 KB and hides the rest behind "View entire
message" (and with it our unsubscribe link), so the HTML is kept under
``max_bytes``: when every story in full would not fit, the first stories stay
in full and the rest are listed as linked headlines, the largest number of full
stories that fits being found by bisection. The text part always carries every
story and bullet.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from .edition import UNSUBSCRIBE_PLACEHOLDER, Edition

TEMPLATE_DIR = Path(__file__).with_name("templates")
MAX_HTML_BYTES = 100_000
# Room for the per-subscriber unsubscribe URL that replaces the placeholder.
_URL_ALLOWANCE = 300
# Where the rules that cannot be inlined go back in, after inlining: css-inline drops a rule
# whose selector matches nothing at render time, and Outlook.com's [data-ogsc]/[data-ogsb]
# attributes only appear in the reader's client.
_KEPT_MARKER = "<!--syndicate:kept-styles-->"


@functools.lru_cache(maxsize=1)
def _kept_styles() -> str:
    return f"<style>\n{(TEMPLATE_DIR / 'edition_kept.css').read_text(encoding='utf-8')}</style>"


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    # Autoescape on for every .html template: article text is plain text from publishers.
    return Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )


@functools.lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    # Layout and colours go inline; dark-mode and mobile rules are added back by _html.
    return css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


@dataclasses.dataclass(frozen=True)
class Rendered:
    subject: str
    html: str  # with UNSUBSCRIBE_PLACEHOLDER where each subscriber's link goes
    text: str
    full_stories: int
    linked_only: int


def _context(edition: Edition, full: int, headlines: int | None = None) -> dict[str, Any]:
    shown = edition.stories[:full]
    rest = edition.stories[full:]
    overflow = rest if headlines is None else rest[:headlines]
    trimmed = dataclasses.replace(edition, stories=shown)
    return {
        "subject": edition.subject(),
        "preheader": edition.preheader(),
        "list_name": edition.list_name,
        "date": edition.date_label,
        "groups": trimmed.groups() if shown else [],
        "overflow": overflow,
        "hidden": len(rest) - len(overflow),
        "site_url": edition.site_url,
        "unsubscribe_url": UNSUBSCRIBE_PLACEHOLDER,
    }


def _html(edition: Edition, full: int, headlines: int | None = None) -> str:
    raw = environment().get_template("edition.html").render(**_context(edition, full, headlines))
    return _inliner().inline(raw).replace(_KEPT_MARKER, _kept_styles(), 1)


def _size(html: str) -> int:
    return len(html.encode("utf-8")) + html.count(UNSUBSCRIBE_PLACEHOLDER) * _URL_ALLOWANCE


def render_html(edition: Edition, max_bytes: int = MAX_HTML_BYTES) -> tuple[str, int, int]:
    """(html, stories in full, stories as headlines) with the html under max_bytes."""
    total = len(edition.stories)
    html = _html(edition, total)
    if _size(html) <= max_bytes:
        return html, total, 0
    low, high = 0, total - 1  # invariant: `low` full stories fit (checked below), `high + 1` do not
    best = _html(edition, 0)
    if _size(best) > max_bytes:
        return _headlines_only(edition, max_bytes)
    while low < high:
        mid = (low + high + 1) // 2
        candidate = _html(edition, mid)
        if _size(candidate) <= max_bytes:
            low, best = mid, candidate
        else:
            high = mid - 1
    return best, low, total - low


def _headlines_only(edition: Edition, max_bytes: int) -> tuple[str, int, int]:
    # Even a list of headlines is too long: show as many as fit and link to the site.
    low, high = 0, len(edition.stories)
    best = _html(edition, 0, 0)
    while low < high:
        mid = (low + high + 1) // 2
        candidate = _html(edition, 0, mid)
        if _size(candidate) <= max_bytes:
            low, best = mid, candidate
        else:
            high = mid - 1
    return best, 0, low


def render_text(edition: Edition) -> str:
    text = environment().get_template("edition.txt").render(**_context(edition, len(edition.stories)))
    lines = [line.rstrip() for line in text.splitlines()]
    # Collapse the blank runs the template's control blocks leave behind.
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip() + "\n"


def render(edition: Edition, max_bytes: int = MAX_HTML_BYTES) -> Rendered:
    html, full, linked = render_html(edition, max_bytes)
    return Rendered(edition.subject(), html, render_text(edition), full, linked)


def render_page(name: str, **context: Any) -> str:
    """The small HTML pages readers see (confirm, unsubscribe)."""
    return environment().get_template(name).render(**context)
