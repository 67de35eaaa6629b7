"""The full story as an HTML fragment for ``content:encoded``, Atom content and ``content_html`` (pure).

Article fields are plain text, so every one is escaped here; the only markup in
the result is the markup this module writes. URLs are accepted only as http(s)
(the schema already insists; this is the belt to its braces, for a record that
reached the store some other way), so a ``javascript:`` or ``data:`` link can
never reach a reader, and characters that could end an attribute or a tag are
percent-encoded.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .text import clean, html_text

# Reserved and unreserved URL characters stay as they are; anything else (space, both quotes,
# angle brackets, backslash, non-ASCII) is percent-encoded, as browsers would send it.
_URL_SAFE = "!#$%&()*+,/:;=?@[]~"


def _t(value: Any) -> str:
    return html_text(value)


def _a(value: Any) -> str:
    return html_text(value, quote=True)


def safe_url(url: Any) -> str | None:
    """``url`` if it is an absolute http(s) URL (percent-encoded where needed), else None."""
    if not isinstance(url, str):
        return None
    url = clean(url)
    if url.lower().startswith(("http://", "https://")) and len(url) > len("https://"):
        return quote(url, safe=_URL_SAFE)
    return None


def lead_image(article: dict[str, Any]) -> dict[str, Any] | None:
    """The image marked ``lead``, else the first image, else None."""
    images = [img for img in article.get("images") or [] if safe_url(img.get("url"))]
    return next((img for img in images if img.get("role") == "lead"), images[0] if images else None)


def figure(image: dict[str, Any]) -> str:
    attrs = f'src="{_a(safe_url(image["url"]))}" alt="{_a(image.get("alt", ""))}"'
    for name in ("width", "height"):
        if image.get(name):
            attrs += f' {name}="{int(image[name])}"'
    caption = []
    if image.get("caption"):
        caption.append(_t(image["caption"]))
    if image.get("credit"):
        caption.append(f"<small>({_t(image['credit'])})</small>")
    figcaption = f"<figcaption>{' '.join(caption)}</figcaption>" if caption else ""
    return f"<figure><img {attrs}/>{figcaption}</figure>"


def quick_looks(article: dict[str, Any]) -> str:
    looks = article.get("quickLooks") or {}
    items = "".join(f"<li>{_t(item)}</li>" for item in looks.get("items") or [])
    if not items:
        return ""
    title = f"<h3>{_t(looks['title'])}</h3>" if looks.get("title") else ""
    return f'<section class="quick-looks">{title}<ul>{items}</ul></section>'


def _block(block: dict[str, Any], dateline: str) -> str:
    kind = block.get("type")
    if kind == "heading":
        return f"<h3>{_t(block['text'])}</h3>"
    if kind == "quote":
        who = _t(block.get("speaker", ""))
        if block.get("attribution"):
            who += f", {_t(block['attribution'])}"
        footer = f"<footer>— {who}</footer>" if who else ""
        return f"<blockquote><p>{_t(block['text'])}</p>{footer}</blockquote>"
    return f"<p>{dateline}{_t(block['text'])}</p>"


def body(article: dict[str, Any]) -> str:
    story = article.get("body") or {}
    parts = []
    if story.get("title"):
        parts.append(f"<h2>{_t(story['title'])}</h2>")
    # The dateline opens the first paragraph, as in print: "KYIV, Ukraine — In a rare ...".
    dateline = f"<strong>{_t(story['dateline'])} —</strong> " if story.get("dateline") else ""
    for block in story.get("blocks") or []:
        if dateline and block.get("type") == "paragraph":
            parts.append(_block(block, dateline))
            dateline = ""
        else:
            parts.append(_block(block, ""))
    if dateline:  # no paragraph to carry it: keep it on its own line
        parts.insert(1 if story.get("title") else 0, f"<p>{dateline.strip()}</p>")
    return "".join(parts)


def corrections(article: dict[str, Any]) -> str:
    items = "".join(
        f'<li><time datetime="{_a(c.get("date", ""))}">{_t(c.get("date", ""))}</time> {_t(c.get("text", ""))}</li>'
        for c in article.get("corrections") or []
    )
    return f'<section class="corrections"><h3>Corrections</h3><ul>{items}</ul></section>' if items else ""


def related(article: dict[str, Any]) -> str:
    links = [
        f'<li><a rel="{_a(r.get("rel", "related"))}" href="{_a(safe_url(r.get("url")))}">{_t(r.get("headline") or r.get("url"))}</a></li>'
        for r in article.get("related") or [] if safe_url(r.get("url"))
    ]
    return f'<ul class="related">{"".join(links)}</ul>' if links else ""


# Scripts written right to left (BCP 47 primary subtags): their stories carry dir="rtl".
RTL_LANGUAGES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ps", "sd", "ug", "ur", "yi"})


def is_rtl(language: str | None) -> bool:
    return bool(language) and language.split("-", 1)[0].lower() in RTL_LANGUAGES


def article_html(article: dict[str, Any], language: str | None = None) -> str:
    """Lead figure, Quick Looks, the body (dateline, paragraphs, quotes), other photos, corrections, links.

    A right-to-left story is wrapped in ``<div lang=".." dir="rtl">``: readers lay
    content out left to right unless told otherwise, which scrambles Arabic or
    Hebrew punctuation and lists.
    """
    lead = lead_image(article)
    others = [img for img in article.get("images") or [] if img is not lead and safe_url(img.get("url"))]
    html = "".join([
        figure(lead) if lead else "",
        quick_looks(article),
        body(article),
        "".join(figure(img) for img in others),
        corrections(article),
        related(article),
    ])
    if is_rtl(language):
        return f'<div lang="{_a(language)}" dir="rtl">{html}</div>'
    return html
