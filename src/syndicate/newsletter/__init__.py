"""The newsletter digest channel.

Pure (no Redis, no Celery, no network):
    cron        cron expressions in a list's time zone
    listconfig  a list's configuration: validation, defaults, addresses
    edition     choosing and shaping the stories of an edition
    render      Jinja2 templates to HTML (CSS inlined, under 100 KB) and text
    message     the MIME message, encoded once and stamped per subscriber
    tokens      signed confirmation and unsubscribe tokens
    smtpurl     SMTP settings from a URL

Adapters:
    lists       lists and subscribers in Redis
    editions    staging, rotation, recipient claims and the sending lease in Redis
    transport   SMTP over smtplib, returning an outcome per message
    sender      sending an edition: batches, rate limit, retries, the exactly-once bookkeeping
    service     the operations tasks, CLI and API share
"""
