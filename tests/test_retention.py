"""Article bodies are let go once nothing needs them; the version record still serves every later event.

* A story past the event retention, out of every feed window and its margin and
  staged for no edition loses its body; one in a window or its margin, one
  staged for an edition, and one changed within the retention keep theirs
  (a whole deployment of real processes: API, workers, beat, partner sinks, SMTP).
* A retraction of a trimmed story reaches partners as a valid, signed
  ``article.retracted`` carrying what identifies the story (id, URL, headline,
  section, dates, feeds); an update stores the whole story again, and feeds and
  partners carry it.
* ``GET /v1/articles/{id}`` and the console answer a version record with
  ``"bodyKept": false``, and a resent retraction of it is still a duplicate.
* The version record is small: a few hundred bytes of JSON, about 1 KB of Redis
  with its hash (against about 3 KB for the record that kept summary and Quick Looks).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
import requests

from conftest import INGEST_AUTH, ROOT, unique_article, wait_for
from faults_harness import ADMIN_TOKEN, API_TOKEN, LIST_ID, PREFIX, Deployment, event_of
from syndicate import events, retention
from syndicate.config import reset_settings
from syndicate.schemas import ValidationFailed, validate
from syndicate.store import key
from syndicate.webhooks import payload
from webhooks_fixtures import verify

DAY = 86400.0
AUTH = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}


def _story(tag: str, section: str, year: int, **changes) -> dict:
    stamp = f"{year}-03-01T10:00:00Z"
    return unique_article(section=section, id=f"r-{tag}-{uuid.uuid4().hex[:8]}", datePublished=stamp,
                          dateModified=stamp, **changes)


def _post(api: str, article: dict) -> dict:
    answer = requests.post(f"{api}/v1/articles", data=json.dumps(article), headers=AUTH, timeout=30)
    assert answer.status_code == 202, answer.text
    return answer.json()


def _stored(dep: Deployment, article_id: str) -> dict:
    return json.loads(dep.client.hget(f"{PREFIX}article:{article_id}", "json"))


def _run_task(dep: Deployment, name: str, **kwargs) -> None:
    """Send ``name`` through the deployment's broker to its workers, as beat does."""
    code = ("import json, sys; from syndicate.workers.app import app; "
            "app.send_task(sys.argv[1], kwargs=json.loads(sys.argv[2]))")
    done = subprocess.run([sys.executable, "-c", code, name, json.dumps(kwargs)], env=dep.env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _received(dep: Deployment, kind: str, article_id: str, version: int) -> dict[str, dict]:
    """partner -> the verified body of its ``kind`` webhook for that story version (partners that have it)."""
    out = {}
    for name, sink in dep.sinks.items():
        for request in sink.requests():
            if event_of(request) == (kind, article_id, version):
                out[name] = verify(dep.secrets[name], request)
    return out


def test_only_stories_nothing_needs_lose_their_bodies_and_still_flow_through_every_channel():
    with Deployment(SYNDICATE_FEED_SIZE="2", SYNDICATE_BODY_MARGIN="2") as dep:
        dep.start()
        api = dep.api_url
        newest = [_story(f"new{i}", "World", 2030 + i) for i in range(4)]      # the main window and its margin
        section = [_story(f"sec{i}", "Archive", 2010 + i) for i in range(4)]   # Archive's window and its margin
        retracted, updated = _story("retract", "Archive", 2002), _story("update", "Archive", 2001)
        staged, young = _story("staged", "Archive", 2000), _story("young", "Archive", 1999)
        stories = [*newest, *section, retracted, updated, staged, young]
        for article in stories:
            _post(api, article)
        ids = [a["id"] for a in stories]
        wait_for(lambda: dep.client.hlen(f"{PREFIX}nl:pending:{LIST_ID}") >= len(ids) + 1, timeout=120,
                 message="every story staged for the list")
        wait_for(lambda: dep.client.zcard(f"{PREFIX}events:pending") == 0 and
                 dep.client.zcard(f"{PREFIX}events:owed:feeds") == 0, timeout=120, message="feeds done")
        # The edition that carried them went out (only `staged` still waits), and all but `young` were
        # last changed longer ago than the event retention (30 days by default).
        dep.client.hdel(f"{PREFIX}nl:pending:{LIST_ID}", *[i for i in ids if i != staged["id"]])
        aged = {i: time.time() - 31 * DAY for i in ids if i != young["id"]}
        dep.client.zadd(f"{PREFIX}articles:full", aged, xx=True)

        _run_task(dep, "syndicate.ingest.trim_bodies")
        wait_for(lambda: dep.client.hget(f"{PREFIX}retention:last", "at"), timeout=60, message="a retention run")
        trimmed = {i for i in ids if "body" not in _stored(dep, i)}
        assert trimmed == {retracted["id"], updated["id"]}
        kept = _stored(dep, retracted["id"])
        assert kept == {**{k: retracted[k] for k in retention.KEPT_FIELDS}, "bodyKept": False}
        shown = requests.get(f"{api}/v1/articles/{retracted['id']}", headers=AUTH, timeout=30).json()
        assert shown["bodyKept"] is False and "body" not in shown
        # A resend of the same version is still a duplicate; an older one stays refused.
        again = requests.post(f"{api}/v1/articles", data=json.dumps(retracted), headers=AUTH, timeout=30)
        assert again.status_code == 200 and again.json()["outcome"] == "duplicate"

        # A retraction of the trimmed story: partners verify a valid article.retracted.
        gone = requests.delete(f"{api}/v1/articles/{retracted['id']}", headers=AUTH, timeout=30)
        assert gone.status_code == 202 and gone.json()["type"] == "article.retracted", gone.text
        bodies = wait_for(lambda: (lambda got: got if len(got) == len(dep.sinks) else None)(
            _received(dep, "article.retracted", retracted["id"], 1)), timeout=60, message="the retraction delivered")
        for body in bodies.values():
            validate("event", body)
            data = body["data"]
            assert data["status"] == "retracted" and (data["id"], data["url"]) == (retracted["id"], retracted["url"])
            assert data["headline"] == retracted["headline"] and "summary" not in data and "article" not in data

        # An update of the other trimmed story, now dated newest: stored whole, in the feeds with its body.
        newer = {**updated, "version": 2, "headline": updated["headline"] + " (updated)",
                 "datePublished": "2040-01-01T00:00:00Z", "dateModified": "2040-01-01T00:00:00Z"}
        assert _post(api, newer)["type"] == "article.updated"
        assert _stored(dep, updated["id"])["body"] == updated["body"]
        assert dep.client.zscore(f"{PREFIX}articles:full", updated["id"]) is not None
        paragraph = next(b["text"] for b in updated["body"]["blocks"] if b.get("type") == "paragraph")

        def in_feed():
            feed = requests.get(f"{api}/feeds/all.json", timeout=30).json()
            return next((i for i in feed["items"] if i["title"] == newer["headline"]), None)

        item = wait_for(in_feed, timeout=60, message="the update in the main feed")
        assert paragraph[:40] in item["content_html"]
        wait_for(lambda: len(_received(dep, "article.updated", updated["id"], 2)) == len(dep.sinks), timeout=60,
                 message="the update delivered")

        # An edition, once sent (and after SYNDICATE_NEWSLETTER_COMPACT_AFTER_HOURS, 0 here), keeps its counts
        # and no per-recipient record of those it reached.
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        eid = requests.post(f"{api}/v1/newsletters/{LIST_ID}/send", headers=admin, timeout=30).json()["edition_id"]
        edition_url = f"{api}/v1/newsletters/{LIST_ID}/editions/{eid}"
        sent = wait_for(lambda: (lambda e: e if e["state"] == "sent" else None)(
            requests.get(edition_url, headers=admin, timeout=30).json()), timeout=60, message="the edition sent")
        assert sent["counts"]["sent"] == 3 and dep.client.hlen(f"{PREFIX}nl:ed:{eid}:status") == 3
        dep.client.delete(f"{PREFIX}retention:last")
        _run_task(dep, "syndicate.ingest.trim_bodies", editions_older_than=0)
        wait_for(lambda: dep.client.hget(f"{PREFIX}retention:last", "at"), timeout=60, message="a retention run")
        # The recipients' snapshot goes last, after their records.
        wait_for(lambda: not dep.client.exists(f"{PREFIX}nl:ed:{eid}:rcpt"), timeout=60, message="compacted")
        assert dep.client.hlen(f"{PREFIX}nl:ed:{eid}:status") == 0
        assert requests.get(edition_url, headers=admin, timeout=30).json()["counts"] == sent["counts"]


def test_a_version_record_is_answered_marked_and_still_decides_duplicates(api_server, http, redis_client):
    from syndicate.console.articles import timeline

    article = unique_article(datePublished="1990-01-01T00:00:00Z", dateModified="1990-01-01T00:00:00Z")
    events.ingest(article)
    whole = redis_client.memory_usage(key("article", article["id"]), samples=0)
    first = events.retract(article["id"])  # retracted: in no feed, staged nowhere (nothing was fanned out)
    counts = retention.trim_bodies(older_than=0, only=[article["id"]])
    assert counts == {"checked": 1, "trimmed": 1, "kept": 0}

    answer = http.get(f"{api_server}/v1/articles/{article['id']}", headers=INGEST_AUTH)
    assert answer.status_code == 200
    shown = answer.json()
    assert shown == {**{k: article[k] for k in retention.KEPT_FIELDS}, "status": "retracted", "bodyKept": False}
    assert redis_client.zscore(key("articles", "full"), article["id"]) is None
    # Its digest already is the retraction's: no second one is kept.
    assert redis_client.hget(key("article", article["id"]), "retract_digest") is None
    assert redis_client.memory_usage(key("article", article["id"]), samples=0) < whole / 4
    # The console's timeline still names the story and its events.
    shown_in_console = timeline(article["id"], redis_client)
    assert shown_in_console["article"]["headline"] == article["headline"]
    assert [e["type"] for e in shown_in_console["events"]] == ["article.published", "article.retracted"]

    # The whole retracted story sent again is the same retraction; a lower version is stale.
    resent = http.post(f"{api_server}/v1/articles", data=json.dumps({**article, "status": "retracted"}),
                       headers={**INGEST_AUTH, "Content-Type": "application/json"})
    assert resent.status_code == 200 and resent.json()["event_id"] == first.event_id
    assert events.retract(article["id"]).outcome == "duplicate"


@pytest.fixture()
def one_story_window(monkeypatch):
    """Feeds of one story and no margin, so a live story of 1990 is past every window."""
    monkeypatch.setenv("SYNDICATE_FEED_SIZE", "1")
    monkeypatch.setenv("SYNDICATE_BODY_MARGIN", "0")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


def test_a_live_story_trimmed_then_retracted_keeps_duplicates_and_staleness(redis_client, one_story_window):
    article = unique_article(version=3, datePublished="1990-01-01T00:00:00Z", dateModified="1990-01-01T00:00:00Z")
    newer = unique_article()  # the one story the window holds, whatever else this run stored
    events.ingest(newer)
    events.ingest(article)
    try:
        assert retention.trim_bodies(older_than=0, only=[article["id"]])["trimmed"] == 1
    finally:
        events.retract(newer["id"])
    assert redis_client.hget(key("article", article["id"]), "retract_digest")
    assert events.ingest(article).outcome == "duplicate"
    assert events.ingest({**article, "version": 2}).outcome == "stale"
    gone = events.retract(article["id"])
    record = events.get_event(gone.event_id or "")
    assert record and record["article"]["bodyKept"] is False and record["article"]["status"] == "retracted"
    resent = events.ingest({**article, "status": "retracted"})
    assert (resent.outcome, resent.event_id) == ("duplicate", gone.event_id)


def test_the_version_record_carries_every_field_a_retraction_requires():
    article = unique_article()
    kept = retention.kept_record({**article, "status": "retracted"})
    body = payload.event_body({"type": "article.retracted", "timestamp": "2026-11-30T05:00:00Z", "article": kept},
                              "https://news.example", full_article=True)
    validate("event", body)
    assert "article" not in body["data"] and "summary" not in body["data"]  # not passed off as the article
    assert len(retention.encode_record(article)) < 600
    # A publication or an update is always whole: the schema refuses one without summary and Quick Looks.
    with pytest.raises(ValidationFailed) as refused:
        validate("event", {**body, "type": "article.updated"})
    assert {p.path for p in refused.value.problems} == {"$.data"}


def test_a_version_record_still_renders_in_every_feed_format():
    # A refill after more retractions than the margin may pull a trimmed story back into a window, and
    # `feeds rebuild` renders whatever the windows hold: its headline and link still show.
    from types import SimpleNamespace

    import feedparser

    from syndicate.feeds import feed_spec, render_feed

    article = unique_article()
    settings = SimpleNamespace(feed_title="T", feed_description="D", site_url="https://news.example",
                               public_url="https://news.example", feed_icon=None, websub_hub=None, feed_max_age=60)
    rendered = render_feed(feed_spec("all", settings), [retention.kept_record(article)], 50)
    for fmt in ("rss", "atom"):
        parsed = feedparser.parse(rendered.documents[fmt].body)
        assert parsed.bozo == 0 and parsed.entries[0].title == article["headline"]
        assert parsed.entries[0].link == article["url"]
    assert json.loads(rendered.documents["json"].body)["items"][0]["url"] == article["url"]


def test_stories_stored_before_the_retention_existed_are_listed_on_its_first_run(redis_client):
    article = unique_article()
    result = events.ingest(article)
    # As a release without the retention left it: no entry in articles:full, and no run yet.
    redis_client.zrem(key("articles", "full"), article["id"])
    redis_client.delete(key("articles", "full", "seeded"))
    assert retention.seed_full_set(redis_client) >= 1
    logged_at = int(result.event_id[4:16], 16) / 1000
    assert redis_client.zscore(key("articles", "full"), article["id"]) == pytest.approx(logged_at)
    assert retention.seed_full_set(redis_client) == 0  # once
