"""Feed documents are stored gzip-compressed; every reader gets the exact bytes that were rendered.

* A render stores each format as ``{fmt}:gz`` (deterministic gzip) and nothing
  uncompressed; the API, a mirror's folder and the static files carry the
  rendered bytes.
* A document stored uncompressed by an older release is still served and
  mirrored, and the next render replaces it with the compressed form.
"""

from __future__ import annotations

import gzip
import subprocess

from feeds_fixtures import dated_story, folder_files, unique_section

from syndicate import events
from syndicate.config import get_settings
from syndicate.feeds import FORMATS, mirror, service, slugify, state
from syndicate.feeds.model import feed_spec
from syndicate.store import get_redis


def _publish(section: str) -> str:
    article = dated_story(section)
    events.ingest(article)
    service.apply_article(article["id"])
    return f"sections/{slugify(section)}"


def test_documents_are_stored_compressed_and_served_as_rendered(api_server, http):
    feed_id = _publish(unique_section("Gzip"))
    raw = get_redis(decode=False)
    stored = raw.hgetall(state.doc_key(feed_id))
    rendered = service.render_now(feed_id).documents
    spec = feed_spec(feed_id, get_settings())
    for fmt in FORMATS:
        assert fmt.encode() not in stored  # no uncompressed copy beside the compressed one
        body = gzip.decompress(stored[f"{fmt}:gz".encode()])
        assert body == rendered[fmt].body
        # One ordinary gzip stream that the gzip tool reads, stored compressed (not just wrapped).
        assert subprocess.run(["gzip", "-dc"], input=stored[f"{fmt}:gz".encode()], capture_output=True,
                              check=True).stdout == body
        served = http.get(f"{api_server}/feeds/{spec.path(fmt)}")
        assert served.status_code == 200 and served.content == body
        assert (get_settings().feed_dir / spec.path(fmt)).read_bytes() == body
        assert len(stored[f"{fmt}:gz".encode()]) < len(body) / 2


def test_an_uncompressed_document_of_an_older_release_is_read_then_replaced(api_server, http, tmp_path):
    section = unique_section("Legacy")
    feed_id = _publish(section)
    raw = get_redis(decode=False)
    doc = state.doc_key(feed_id)
    spec = feed_spec(feed_id, get_settings())
    # As an older release stored it: the bytes uncompressed under the format's name, with new ETags
    # (so no process has them cached yet).
    legacy = {fmt: f"<!-- legacy {fmt} -->".encode() + state.read_bodies(raw, feed_id, [fmt])[fmt] for fmt in FORMATS}
    for fmt, body in legacy.items():
        raw.hset(doc, mapping={fmt: body, f"{fmt}:etag": f'"legacy-{fmt}"'})
        raw.hdel(doc, f"{fmt}:gz")

    for fmt, body in legacy.items():
        served = http.get(f"{api_server}/feeds/{spec.path(fmt)}")
        assert served.status_code == 200 and served.content == body
    mirror.sync_feed(raw, feed_id, tmp_path)
    assert {name: data for name, data in folder_files(tmp_path).items()} == \
        {spec.path(fmt): body for fmt, body in legacy.items()}

    _publish(section)  # the next render
    stored = raw.hgetall(doc)
    for fmt in FORMATS:
        assert fmt.encode() not in stored and f"{fmt}:gz".encode() in stored
        assert not state.read_bodies(raw, feed_id, [fmt])[fmt].startswith(b"<!-- legacy")
