"""An article posted to the API reaches a task on every channel queue, run by a real worker,
and each channel's receipt settles what the fan-out recorded it owed."""

from __future__ import annotations

import json

import pytest

from conftest import INGEST_AUTH, unique_article, wait_for

from syndicate import events
from syndicate.workers.base import CHANNEL_TASKS, receipts

pytestmark = pytest.mark.both_brokers


def test_posted_story_reaches_every_channel_queue(api_server, celery_worker, http, redis_client):
    article = unique_article()
    response = http.post(f"{api_server}/v1/articles", data=json.dumps(article), headers={**INGEST_AUTH, "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    assert response.json()["type"] == "article.published"

    for queue in ("ingest", "feeds", "webhooks", "newsletter"):
        wait_for(lambda: any(r["subject"] == event_id for r in receipts(queue)), message=f"{queue} receipt")
    # Nothing is left for the reconciler to re-dispatch.
    for channel in CHANNEL_TASKS:
        wait_for(lambda: redis_client.zscore(events.owed_key(channel), event_id) is None, message=f"{channel} settled")
