"""``GET /metrics``: Prometheus text format.

Counters of this API process (ingest outcomes) plus metrics read from Redis on
each scrape (queue depths, events waiting for fan-out, receipts each channel
still owes, reconciler re-dispatches, dead letters by channel, live articles),
so any API replica reports the same deployment-wide state.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``syndicate run`` sets it for the API and
its workers alike) the page also carries every process's series from that
directory: the workers' task, delivery, email, feed and WebSub metrics
(``syndicate.metrics``). Workers on other hosts serve their own
(``SYNDICATE_WORKER_METRICS_PORT``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .. import deadletters, events
from .. import metrics as work_metrics
from ..store import get_redis, key

router = APIRouter(tags=["operations"])
registry = CollectorRegistry()
_shared = work_metrics.multiprocess_dir()

# Shared directory: this counter is written there and read back with everyone else's.
INGESTED = Counter("syndicate_ingest_total", "Articles received through the API, by outcome",
                   ["outcome"], registry=None if _shared else registry)

QUEUES = ("ingest", "feeds", "webhooks", "newsletter")
CHANNELS = ("feeds", "webhooks", "newsletter")


class StoreCollector:
    """Gauges computed from Redis at scrape time."""

    def collect(self):
        from ..queues import queue_depths

        client = get_redis()
        depth = GaugeMetricFamily("syndicate_queue_depth", "Messages waiting on each Celery queue (every priority "
                                  "list on Redis; ready messages on RabbitMQ)", labels=["queue"])
        depths = list(queue_depths(QUEUES).values())
        with client.pipeline(transaction=False) as pipe:
            pipe.zcard(key("events:pending"))
            pipe.llen(key("dead-letters"))
            pipe.zcard(key("articles"))
            pipe.zcard(key("webhooks", "schedule"))
            pipe.zcard(key("webhooks", "deliveries", "failed"))
            pending, dead, live, scheduled, failed = pipe.execute()
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


class WorkCollector:
    """Task, delivery, email, feed and WebSub series recorded in this process (no shared directory)."""

    def collect(self):
        yield from work_metrics.REGISTRY.collect()


registry.register(StoreCollector())
if _shared:
    from prometheus_client import multiprocess

    multiprocess.MultiProcessCollector(registry, path=_shared)
else:
    registry.register(WorkCollector())


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
