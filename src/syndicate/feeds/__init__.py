"""The feeds channel: RSS 2.0, Atom 1.0 and JSON Feed 1.1 for the main feed and each section.

Pure modules (no Redis, Celery or HTTP):
    text      XML-safe text, section slugs
    content   the story as escaped HTML
    model     FeedSpec (which feed, its URLs) and Item (one article, format-neutral)
    xmlfeeds  RSS and Atom through feedgen, its defects worked around
    jsonfeed  JSON Feed 1.1
    render    render_feed: every format's bytes + ETag + Last-Modified
    conditional  If-None-Match / If-Modified-Since rules, the WebSub Link header

Adapters:
    index     Redis: per-feed item indexes, stored documents, single-flight rendering
    static    atomic writes to SYNDICATE_FEED_DIR
    websub    the hub publish ping and its coalescing queue
    service   the use cases the tasks and the CLI call (apply, render, rebuild, sweep)
"""

from .model import FORMATS, MAIN_FEED, FeedSpec, feed_spec, section_feed_id
from .render import Document, Rendered, render_feed
from .text import clean, slugify

__all__ = ["FORMATS", "MAIN_FEED", "FeedSpec", "feed_spec", "section_feed_id", "Document", "Rendered",
           "render_feed", "clean", "slugify"]
