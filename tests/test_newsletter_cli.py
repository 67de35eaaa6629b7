"""The newsletter CLI: lists, subscribers (CSV import with progress), digest preview and send --now."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import unique_article
from newsletter_fixtures import addresses, make_list, publish, smtp_sink, unique_list_id

from syndicate.cli.main import cli
from syndicate.newsletter import editions, lists


@pytest.fixture()
def runner(redis_client):
    smtp_sink()
    return CliRunner()


def test_lists_put_show_and_bad_files(runner, tmp_path):
    list_id = unique_list_id()
    good = tmp_path / "list.json"
    good.write_text(json.dumps({"id": list_id, "name": "Weekend", "schedule": "0 8 * * sat", "timezone": "UTC"}))
    result = runner.invoke(cli, ["lists", "put", str(good)])
    assert result.exit_code == 0 and f"created list {list_id}" in result.output
    assert list_id in runner.invoke(cli, ["lists", "list"]).output
    assert json.loads(runner.invoke(cli, ["lists", "show", list_id]).output)["name"] == "Weekend"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": list_id, "name": "Weekend", "schedule": "99 * * * *", "timezone": "UTC"}))
    result = runner.invoke(cli, ["lists", "put", str(bad)])
    assert result.exit_code == 2 and "$.schedule" in result.output


def test_subscribers_add_list_remove_and_import(runner, tmp_path):
    config = make_list()
    one, two, three = addresses(3)
    assert runner.invoke(cli, ["subscribers", "add", config["id"], one]).exit_code == 0
    csv_file = tmp_path / "subs.csv"
    csv_file.write_text(f"email\n{two}\n{three}\nnope\n")
    result = runner.invoke(cli, ["subscribers", "import", config["id"], str(csv_file)])
    assert result.exit_code == 2  # one row was invalid
    assert "2 added" in result.output and "row 4" in result.output
    assert "importing into" in result.output  # the progress bar (stderr, mixed in by CliRunner)
    assert runner.invoke(cli, ["subscribers", "remove", config["id"], one]).exit_code == 0
    listed = runner.invoke(cli, ["subscribers", "list", config["id"], "--status", "confirmed"]).output.split()
    assert sorted(a for a in listed if "@" in a) == sorted([two, three])
    assert runner.invoke(cli, ["subscribers", "add", "no-such-list", one]).exit_code == 1


def test_digest_preview_and_send_now(runner):
    sink = smtp_sink()
    config = make_list()
    reader = addresses(1)[0]
    lists.add_subscriber(config["id"], reader)
    empty = runner.invoke(cli, ["digest", "preview", config["id"]])
    assert empty.exit_code == 0 and "would be skipped" in empty.output
    story = unique_article(section=config["sections"][0])
    publish(story)
    html = runner.invoke(cli, ["digest", "preview", config["id"], "--html"]).output
    text = runner.invoke(cli, ["digest", "preview", config["id"], "--text"]).output
    assert html.startswith("<!DOCTYPE html>") and story["quickLooks"]["items"][0] in html
    assert story["headline"] in text and "<" not in text.split("\n")[0]
    assert sink.count(reader) == 0  # previews send nothing
    result = runner.invoke(cli, ["digest", "send", config["id"], "--now"])
    assert result.exit_code == 0 and "sent, 1 stories; 1 sent" in result.output
    assert sink.count(reader) == 1
    again = runner.invoke(cli, ["digest", "send", config["id"], "--now"])
    assert again.exit_code == 0 and "skipped" in again.output and sink.count(reader) == 1
    latest = editions.history(config["id"])[0]  # recorded: skipped, with why
    assert latest["state"] == "skipped" and latest["reason"] == "no new stories since the previous edition"
    status = runner.invoke(cli, ["digest", "status", config["id"]]).output
    assert "skipped" in status and "sent=1" in status
    assert len(editions.history(config["id"])) == 2
