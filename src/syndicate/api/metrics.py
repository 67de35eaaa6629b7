"""``GET /metrics``: Prometheus text format.

Counters of this API process (ingest outcomes) plus metrics read from Redis on
each scrape (queue depths, events waiting for fan-out, receipts each channel
still owes, reconciler re-dispatches, dead letters by channel, live articles),
so any API replica reports the same deployment-wide state.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .. import deadletters, events
from ..config import get_settings
from ..store import get_redis, key

router = APIRouter(tags=["operations"])
registry = CollectorRegistry()

INGESTED = Counter("syndicate_ingest_total", "Articles received through the API, by outcome",
                   ["outcome"], registry=registry)

QUEUES = ("ingest", "feeds", "webhooks", "newsletter")
CHANNELS = ("feeds", "webhooks", "newsletter")


class StoreCollector:
    """Gauges computed from Redis at scrape time."""

    def collect(self):
        client = get_redis()
        settings = get_settings()
        depth = GaugeMetricFamily("syndicate_queue_depth", "Messages waiting on each Celery queue", labels=["queue"])
        with client.pipeline(transaction=False) as pipe:
            for queue in QUEUES:
                pipe.llen(settings.broker_prefix + queue)
            pipe.zcard(key("events:pending"))
            pipe.llen(key("dead-letters"))
            pipe.zcard(key("articles"))
            pipe.zcard(key("webhooks", "schedule"))
            pipe.zcard(key("webhooks", "deliveries", "failed"))
            *depths, pending, dead, live, scheduled, failed = pipe.execute()
        for queue, n in zip(QUEUES, depths):
            depth.add_metric([queue], n)
        yield depth
        yield GaugeMetricFamily("syndicate_events_pending", "Events logged but not yet fanned out", value=pending)
        yield GaugeMetricFamily("syndicate_dead_letters", "Tasks that failed for good and wait to be requeued", value=dead)
        yield GaugeMetricFamily("syndicate_articles_live", "Stored articles that are not retracted", value=live)
        yield GaugeMetricFamily("syndicate_webhook_deliveries_scheduled",
                                "Webhook deliveries waiting in the durable retry schedule", value=scheduled)
        yield GaugeMetricFamily("syndicate_webhook_deliveries_failed",
                                "Webhook deliveries that exhausted their schedule (resend or recover them)", value=failed)
        yield from self._channels(client)

    def _channels(self, client):
        owed = GaugeMetricFamily("syndicate_channel_receipts_owed",
                                 "Fanned-out events a channel has not yet recorded a receipt for", labels=["channel"])
        for channel, n in events.owed_counts(CHANNELS, client).items():
            owed.add_metric([channel], n)
        yield owed
        redispatched = CounterMetricFamily("syndicate_reconciler_redispatches",
                                           "Channel tasks the reconciler sent again for want of a receipt",
                                           labels=["channel"])
        done = events.redispatch_totals(client)
        for channel in CHANNELS:
            redispatched.add_metric([channel], done.get(channel, 0))
        yield redispatched
        letters = CounterMetricFamily("syndicate_dead_letters_recorded",
                                      "Dead letters ever recorded, by channel", labels=["channel"])
        totals = deadletters.totals(client)
        for channel in sorted(set(QUEUES) | set(totals)):
            letters.add_metric([channel], totals.get(channel, 0))
        yield letters


registry.register(StoreCollector())


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
