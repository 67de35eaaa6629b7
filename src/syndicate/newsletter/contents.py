"""What an edition carries: its stories, loaded and rendered so that one bad story stays alone.

A story whose stored record cannot be read or shaped (a partial write, an old
release's bug) or that the templates cannot render is left out and reported
through ``on_bad`` (the build dead-letters it); the rest of the edition goes
on. A Redis error is not a bad story: it is raised, and the task retries.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import redis

from .. import events
from ..store import key
from . import editions, render
from .edition import Edition, select

log = logging.getLogger("syndicate.newsletter")
FIRST_EDITION_WINDOW = 24 * 3600

OnBad = Callable[[str, Exception], None]


def _recent_ids(since: float, client: redis.Redis) -> list[str]:
    # The first edition carries the last 24 h: live articles by datePublished (events' index).
    return client.zrevrangebyscore(key("articles"), "+inf", since)


def _loadable(config: dict[str, Any], article_id: str, r: redis.Redis) -> dict[str, Any] | None:
    """The stored article if a digest can show it; raises what a corrupt record raises."""
    article = events.get_article(article_id, r)
    if article is None:
        return None
    if not isinstance(article, dict) or article.get("id") != article_id:
        raise ValueError(f"the stored record of {article_id!r} is not an article")
    select(config, [article])  # shapes it as a story: a record that cannot be shaped fails here, alone
    return article


def stories(config: dict[str, Any], staged_ids: list[str], window_start: str, now: float, r: redis.Redis,
            on_bad: OnBad | None = None) -> list[dict[str, Any]]:
    """The stories of an edition: staged ones (and the last 24 h for a list's first), not sent before."""
    ids = list(dict.fromkeys(staged_ids))
    if not window_start:
        ids += [i for i in _recent_ids(now - FIRST_EDITION_WINDOW, r) if i not in ids]
    exclude = editions.included(config["id"], ids, r)
    articles = []
    for article_id in ids:
        if article_id in exclude:
            continue
        try:
            articles.append(_loadable(config, article_id, r))
        except (redis.RedisError, OSError):
            raise  # the store, not the story: the whole build is retried
        except Exception as exc:  # one story's bad record must never hold the rest of the edition
            log.warning("edition story %s skipped: %s: %s", article_id, type(exc).__name__, exc)
            if on_bad:
                on_bad(article_id, exc)
    return select(config, articles, exclude)


def render_isolated(edition: Edition, on_bad: OnBad) -> tuple[Edition, render.Rendered | None]:
    """Render the edition; a story that cannot be rendered is left out (and reported) instead of stopping it."""
    if not edition.stories:
        return edition, None
    try:
        return edition, render.render(edition)
    except Exception:  # find the story at fault: each is rendered alone, only on this rare path
        pass
    kept = []
    for story in edition.stories:
        try:
            render.render(dataclasses.replace(edition, stories=[story]))
            kept.append(story)
        except Exception as exc:
            log.warning("edition %s: story %s cannot be rendered: %s", edition.edition_id, story["id"], exc)
            on_bad(story["id"], exc)
    edition = dataclasses.replace(edition, stories=kept)
    return edition, render.render(edition) if kept else None
