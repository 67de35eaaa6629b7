"""`syndicate publish` through the console script, directly to Redis and through the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import EXAMPLES, ROOT, unique_article

from syndicate import events

SYNDICATE = [sys.executable, "-m", "syndicate.cli.main"]


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SYNDICATE, *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def write(tmp_path, name, document) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def test_publish_direct_reports_accepted_duplicate_and_rejected(tmp_path, redis_client):
    good = unique_article()
    bad = unique_article(headline="")
    files = [write(tmp_path, "a.json", good), write(tmp_path, "b.json", good), write(tmp_path, "c.json", bad)]
    result = run("publish", *files)
    assert result.returncode == 2, result.stderr
    assert "summary: 1 accepted, 1 duplicate, 1 rejected" in result.stdout
    assert "c.json: rejected: $.headline" in result.stdout
    assert events.get_article(good["id"]) == good
    assert events.get_article(bad["id"]) is None


def test_publish_through_the_api_with_progress(tmp_path, api_server):
    articles = [unique_article() for _ in range(3)]
    files = [write(tmp_path, f"{i}.json", a) for i, a in enumerate(articles)]
    result = run("publish", "--api", api_server, *files, SYNDICATE_API_TOKEN="test-ingest-token")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "summary: 3 accepted, 0 duplicate, 0 rejected" in result.stdout
    assert "publishing" in result.stderr  # the progress bar
    assert result.stdout.count("article.published") == 3
    assert all(events.get_article(a["id"]) == a for a in articles)


def test_publish_through_the_api_with_a_wrong_token_fails_clearly(tmp_path, api_server):
    result = run("publish", "--api", api_server, write(tmp_path, "a.json", unique_article()),
                 SYNDICATE_API_TOKEN="wrong")
    assert result.returncode == 1
    assert "HTTP 401" in result.stdout


def test_publish_to_an_api_that_is_not_there_says_what_to_do(tmp_path):
    result = run("publish", "--api", "http://127.0.0.1:9", write(tmp_path, "a.json", unique_article()))
    assert result.returncode == 1
    assert "is the API running at http://127.0.0.1:9?" in result.stdout


def test_publish_stale_version_is_a_conflict(tmp_path):
    article = unique_article(version=3)
    assert run("publish", write(tmp_path, "new.json", article)).returncode == 0
    result = run("publish", write(tmp_path, "old.json", {**article, "version": 2}))
    assert result.returncode == 2
    assert "conflict: version 2 is older than the stored version 3" in result.stdout


def test_examples_directory_publishes(tmp_path):
    # The examples have fixed ids: once published (here or by another test), again is all duplicates.
    first = run("publish", str(EXAMPLES))
    assert first.returncode == 0, first.stdout + first.stderr
    second = run("publish", str(EXAMPLES))
    assert second.returncode == 0
    count = len(list(EXAMPLES.glob("*.json")))
    assert f"summary: 0 accepted, {count} duplicate, 0 rejected" in second.stdout
