"""The Celery side of syndicate: the app, its queues and one thin task module per queue.

``syndicate/workers/ingest.py`` consumes ``ingest``, ``syndicate/workers/feeds.py`` consumes ``feeds``,
and so on: the module name is the queue name.
"""
