"""What keeps publish -> visible short stays exact (issue 12).

* Stored documents are compressed from their pieces (per-story fragments deflated
  once): the result is one ordinary gzip member that any gzip reader turns back
  into exactly the rendered bytes, the same bytes for the same render, still far
  smaller than the document.
* ``apply_article`` hands the main feed to the workers before it renders the
  story's section feed, so they render side by side rather than one after the
  other; a handed-on render that a later render already covers does nothing.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import zlib

from conftest import load_seed, unique_article
from feeds_fixtures import dated_story, unique_section

from syndicate import events
from syndicate.config import get_settings
from syndicate.feeds import FORMATS, feed_spec, render_feed, service, slugify, state
from syndicate.store import get_redis


def _rendered(count: int = 6):
    articles = [load_seed()] + [unique_article(section="US", headline=f"Story {n} <b>&amp;</b> \u00e9\u4e2d")
                                for n in range(count)]
    return render_feed(feed_spec("sections/us", get_settings(), version="9.9"), articles, 50)


def test_compressed_pieces_are_one_gzip_member_of_exactly_the_document():
    for fmt, doc in _rendered().documents.items():
        assert b"".join(doc.parts) == doc.body and len(doc.parts) > 2
        stored = state.compress_parts(doc.parts)
        assert gzip.decompress(stored) == doc.body
        single = zlib.decompressobj(wbits=31)
        assert single.decompress(stored) == doc.body and single.eof and single.unused_data == b"", fmt
        assert subprocess.run(["gzip", "-dc"], input=stored, capture_output=True, check=True).stdout == doc.body
        assert state.compress_parts(list(doc.parts)) == stored  # deterministic for the same pieces
        assert len(stored) < len(doc.body) / 2


def test_a_feed_that_gains_a_story_compresses_as_from_scratch_and_about_as_small_as_one_pass():
    import random

    seed = load_seed()
    rng = random.Random(12)

    def story(n: int) -> dict:  # distinct text, as real stories differ
        blocks = [{**b, "text": " ".join(rng.sample(b["text"].split(), len(b["text"].split())))}
                  for b in seed["body"]["blocks"]]
        when = f"2031-01-01T00:{n:02d}:00Z"
        return {**seed, "id": f"piece-{n}", "datePublished": when, "dateModified": when,
                "body": {**seed["body"], "blocks": blocks}}

    stories = [story(n) for n in range(51)]
    spec = feed_spec("all", get_settings(), version="9.9")
    render_feed(spec, stories[:50], 50).documents["json"]  # the memo now holds the feed before the new story
    for fmt, doc in render_feed(spec, stories, 50).documents.items():
        warm = state.compress_parts(doc.parts)
        state._deflate_after.cache_clear()
        assert state.compress_parts(doc.parts) == warm and gzip.decompress(warm) == doc.body
        assert len(warm) < len(state.compress(doc.body)) * 1.25, fmt


def test_an_empty_feed_and_a_single_piece_compress_too():
    empty = render_feed(feed_spec("all", get_settings()), [], 50)
    for doc in empty.documents.values():
        assert gzip.decompress(state.compress_parts(doc.parts)) == doc.body
    assert gzip.decompress(state.compress_parts([b"only"])) == b"only"
    assert gzip.decompress(state.compress_parts([])) == b""


def test_a_stored_render_reads_back_as_rendered(api_server, http):
    article = dated_story(unique_section("Pieces"))
    events.ingest(article)
    service.apply_article(article["id"])
    feed_id = f"sections/{slugify(article['section'])}"
    rendered = service.render_now(feed_id).documents
    bodies = state.read_bodies(get_redis(decode=False), feed_id, list(FORMATS))
    for fmt in FORMATS:
        assert bodies[fmt] == rendered[fmt].body
        served = http.get(f"{api_server}/feeds/{feed_id}.{FORMATS[fmt][0]}")
        assert served.status_code == 200 and served.content == rendered[fmt].body
    assert json.loads(bodies["json"])["items"][0]["_syndicate"]["article_id"] == article["id"]


def test_the_main_feed_is_handed_on_before_the_section_feed_renders(api_server):
    article = dated_story(unique_section("Side"))
    events.ingest(article)
    client = get_redis()
    section_feed = f"sections/{slugify(article['section'])}"
    handed: list[tuple[str, int, str | None]] = []

    def dispatch(feed_id: str, gen: int) -> None:
        # What the section feed's stored render holds when the main feed is handed on.
        handed.append((feed_id, gen, client.hget(state.doc_key(section_feed), "gen")))

    touched = service.apply_article(article["id"], dispatch=dispatch)
    assert touched == {"all", section_feed}
    assert handed == [("all", state.current_gen(client, "all"), None)]  # before the new section rendered
    assert int(client.hget(state.doc_key(section_feed), "gen")) == state.current_gen(client, section_feed)

    gen = handed[0][1]
    assert not service.covered("all", gen)
    assert service.render_single_flight("all") == 1
    assert service.covered("all", gen) and not service.covered("all", gen + 1)
    state.mark_changed(client, "all")
    assert not service.covered("all", gen + 1)
