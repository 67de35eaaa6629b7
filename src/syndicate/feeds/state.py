"""Rendered documents and single-flight rendering state, in Redis.

Keys (under the deployment prefix):
    feeds:gen:{feed_id}    int     bumped by every change to the feed
    feeds:lock:{feed_id}   string  the render lock: a random token, with a TTL
    feeds:queued:{feed_id} string  set while a render task of the feed waits in the queue (with a TTL)
    feeds:doc:{feed_id}    hash    {fmt}:gz bytes (gzip, mtime 0), {fmt}:etag, {fmt}:lm, updated, items, gen,
                                   renders, rendered_at, file_error, file_error_at (set while the feed's files
                                   cannot be written), files_at (when its static files were last written);
                                   {fmt} (the bytes uncompressed) from older releases is
                                   still read, and removed by the next render
    feeds:broken           hash    article id -> digest of the stored version that could not be rendered
    feeds:changes          stream  {feed, gen} per stored render, about CHANGES_MAXLEN long (feeds/mirror.py)

Single flight: a change bumps ``gen`` and then tries the lock. Whoever holds it
renders, stores the documents (only while still holding the lock) and releases
it only if ``gen`` did not move during the render; otherwise it renders once
more. So one render is in flight per feed, every burst of changes during a
render costs exactly one more render, and the last change is always rendered.
The lock's TTL bounds the damage of a worker that dies holding it; the sweep
task re-renders any feed whose rendered ``gen`` lags.

Under a burst the workers queue at most one render task per feed (``request_render``):
the task clears its flag when it starts, so a change that arrives once it has
started queues exactly one more. (A worker that got the flag may render at once
instead of queueing the task; it then queues it only if the feed changed
meanwhile, see ``settle_request``.) A render that sees such a task waiting when it
ends leaves the changes made meanwhile to it instead of rendering again at once
(``release`` returns 2): the task sits behind the burst's other events and
renders all of them in one go. It reads ``gen`` only after it took its flag, so
it cannot miss a change that found the flag set.

Documents are stored gzip-compressed, and a format whose ETag did not change keeps its stored bytes, so
a render writes (and appends to the AOF) only what changed, compressed. Every
reader goes through ``read_bodies`` / ``body_of``.

Compressing a whole feed of 50 stories at every render cost more than the rest
of the render together (tens of milliseconds for distinct stories). A rendered
document is a head, one cached fragment per story and a tail (see render.py), so
``compress_parts`` deflates each story's fragment once for the fragment before
it (memoised) and each render only what is new; the pieces are joined into one
ordinary gzip member (each piece ends on a byte-aligned sync flush, so the
concatenation is a valid deflate stream that any gzip reader reads).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import secrets
import struct
import time
import zlib

import redis

from ..store import key
from .render import Rendered

LOCK_TTL_MS = 30_000
# The changes stream keeps about this many entries: far more than any render burst between two reads
# of a connected mirror; a mirror that falls further behind sees the gap and writes every feed again.
CHANGES_MAXLEN = 10_000

# KEYS: lock, doc, changes stream; ARGV: token, gen, ttl, feed id, stream length, updated, items, rendered_at,
# then (format, etag, last-modified, gzip body) quadruples. A format's body is written only when its ETag
# changed (or it was never stored compressed); the uncompressed field of an older release goes.
# The change entry is written in the same call as the documents: a mirror (feeds/mirror.py) that
# reads the stream never misses a stored render.
_STORE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'gen', ARGV[2], 'updated', ARGV[6], 'items', ARGV[7], 'rendered_at', ARGV[8])
for i = 9, #ARGV, 4 do
  local fmt = ARGV[i]
  if redis.call('HGET', KEYS[2], fmt .. ':etag') ~= ARGV[i + 1] or redis.call('HEXISTS', KEYS[2], fmt .. ':gz') == 0 then
    redis.call('HSET', KEYS[2], fmt .. ':gz', ARGV[i + 3])
  end
  redis.call('HSET', KEYS[2], fmt .. ':etag', ARGV[i + 1], fmt .. ':lm', ARGV[i + 2])
  redis.call('HDEL', KEYS[2], fmt)
end
redis.call('HINCRBY', KEYS[2], 'renders', 1)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'feed', ARGV[4], 'gen', ARGV[2])
return 1
"""

# KEYS: lock, gen, queued; ARGV: token, gen rendered. 1 = released, 0 = changed meanwhile (render again),
# 2 = changed meanwhile and released: a queued render task (not started yet) renders it, -1 = lost.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local moved = (redis.call('GET', KEYS[2]) or '0') ~= ARGV[2]
if moved and redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
if moved then return 2 end
return 1
"""


# KEYS: lock; ARGV: token. Drops the lock only if this token still holds it.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: broken; ARGV: article id, digest. 1 the first time this version is reported, else 0.
_REPORT_BROKEN = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def changes_key() -> str:
    """The stream of stored renders, ``{feed, gen}`` per entry, that feed mirrors follow."""
    return key("feeds", "changes")


def gen_key(feed_id: str) -> str:
    return key("feeds", "gen", feed_id)


def lock_key(feed_id: str) -> str:
    return key("feeds", "lock", feed_id)


def doc_key(feed_id: str) -> str:
    return key("feeds", "doc", feed_id)


def queued_key(feed_id: str) -> str:
    return key("feeds", "queued", feed_id)


# How long a render request holds off the next one. The task is acked late, so it runs even if a
# worker dies; the TTL only bounds a request whose task was never sent (the sweep renders it anyway).
QUEUED_TTL_MS = 60_000


def request_render(client: redis.Redis, feed_id: str) -> bool:
    """True if the caller must now queue a render task of ``feed_id``; False if one already waits."""
    return bool(client.set(queued_key(feed_id), 1, nx=True, px=QUEUED_TTL_MS))


# KEYS: gen, doc, queued. 1 = the stored render holds every change: the request is dropped; 0 = it stays.
_SETTLE = """
local stored = redis.call('HGET', KEYS[2], 'gen')
if stored and tonumber(stored) >= tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('DEL', KEYS[3])
  return 1
end
return 0
"""


def settle_request(client: redis.Redis, feed_id: str) -> bool:
    """After a render made in place of a queued task: drop the request if nothing is left to render
    (True); else keep it (False) and the caller queues the task, which renders what changed meanwhile.

    Atomic, so a change made after the check finds the request gone and asks for its own render.
    """
    script = client.register_script(_SETTLE)
    return bool(script(keys=[gen_key(feed_id), doc_key(feed_id), queued_key(feed_id)]))


def take_request(client: redis.Redis, feed_id: str) -> None:
    """A queued render task starts: any change from now on queues another one."""
    client.delete(queued_key(feed_id))


def up_to_date(client: redis.Redis, feed_id: str) -> bool:
    """True if the stored render already holds every change made so far (nothing to render)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.get(gen_key(feed_id))
        pipe.hget(doc_key(feed_id), "gen")
        current, stored = pipe.execute()
    return stored is not None and int(stored) >= int(current or 0)


def gen_moved(client: redis.Redis, feed_id: str, gen: int) -> bool:
    """True if the feed changed after a render read ``gen``: a later render is owed and will follow."""
    return current_gen(client, feed_id) != gen


def mark_changed(client: redis.Redis, feed_id: str) -> int:
    return client.incr(gen_key(feed_id))


def current_gen(client: redis.Redis, feed_id: str) -> int:
    return int(client.get(gen_key(feed_id)) or 0)


def try_lock(client: redis.Redis, feed_id: str) -> str | None:
    """A token if this caller now owns the feed's render, else None (someone else is rendering)."""
    token = secrets.token_hex(8)
    return token if client.set(lock_key(feed_id), token, nx=True, px=LOCK_TTL_MS) else None


def store(client: redis.Redis, feed_id: str, token: str, gen: int, rendered: Rendered) -> bool:
    """Save every format of a render, if ``token`` still holds the lock; False if it was lost."""
    fields: list[object] = [rendered.updated.isoformat(), len(rendered.item_ids), f"{time.time():.3f}"]
    for fmt, doc in rendered.documents.items():
        fields += [fmt, doc.etag, doc.last_modified, compress_parts(doc.parts) if doc.parts else compress(doc.body)]
    script = client.register_script(_STORE)
    keys = [lock_key(feed_id), doc_key(feed_id), changes_key()]
    return bool(script(keys=keys, args=[token, gen, LOCK_TTL_MS, feed_id, CHANGES_MAXLEN, *fields]))


def compress(body: bytes) -> bytes:
    """The stored form of a document: gzip with no timestamp, so the same bytes store the same."""
    return gzip.compress(body, mtime=0)


# gzip member header: deflate, no flags, mtime 0, no compression hint, Unix (gzip.compress's at level 6).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
_LEVEL = 6  # zlib's default: as small as 9 on feed documents, in half the time
_WINDOW = 32 * 1024  # how far back deflate can refer
_SHORT = 64  # a piece this short (a JSON comma) lends little history: the piece before it is added


def _deflate(piece: bytes, history: bytes = b"") -> bytes:
    """Raw deflate of ``piece`` ending on a sync flush (byte-aligned, not final), referring back only into
    ``history``: valid wherever exactly those bytes come right before it in the stream."""
    compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=history[-_WINDOW:]) if history \
        else zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH)


@functools.lru_cache(maxsize=2048)  # about as many as the renderers keep of their own fragments
def _deflate_after(before: tuple[bytes, ...], piece: bytes) -> bytes:
    # Keyed by the pieces themselves: the renderers hand out the same cached objects, whose hash Python keeps.
    return _deflate(piece, b"".join(before))


_FINAL_BLOCK = zlib.compressobj(_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH)


def compress_parts(parts: tuple[bytes, ...] | list[bytes]) -> bytes:
    """gzip of ``b"".join(parts)``, deflating each inner part (a story's fragment) once for where it stands.

    Each inner part is deflated with the part before it as its history (as one pass
    over the document would have it, within deflate's window), so stories still
    share their common text and the result is about as small as ``compress``. A
    feed keeps its order when a story is added (the new one goes on top), so nearly
    every (part before, part) pair is already in the memo: a render deflates the
    new story, the one now after it, and the document's own head and tail.
    Deterministic like ``compress``.
    """
    if len(parts) < 2:
        return compress(b"".join(parts))
    crc, size = 0, 0
    for piece in parts:
        crc, size = zlib.crc32(piece, crc), size + len(piece)
    out = [_GZIP_HEADER, _deflate(parts[0])]
    for n in range(1, len(parts) - 1):
        before = parts[max(1, n - 2):n] if len(parts[n - 1]) < _SHORT else parts[n - 1:n]
        out.append(_deflate_after(tuple(before) if n > 1 else (), parts[n]))
    out += [_deflate(parts[-1]), _FINAL_BLOCK, struct.pack("<II", crc, size & 0xFFFFFFFF)]
    return b"".join(out)


def body_fields(fmt: str) -> list[str]:
    """The hash fields ``body_of`` reads for ``fmt``: the compressed one, then an older release's plain one."""
    return [f"{fmt}:gz", fmt]


def body_of(compressed: bytes | None, plain: bytes | None) -> bytes | None:
    """A document's bytes from the values of ``body_fields`` (None if it was never rendered)."""
    if compressed is not None:
        return gzip.decompress(compressed)
    return plain


def read_bodies(raw: redis.Redis, feed_id: str, formats: tuple[str, ...] | list[str]) -> dict[str, bytes | None]:
    """{fmt: bytes or None} of the stored documents; ``raw`` must return bytes (``get_redis(decode=False)``)."""
    values = raw.hmget(doc_key(feed_id), [f for fmt in formats for f in body_fields(fmt)])
    return {fmt: body_of(values[2 * n], values[2 * n + 1]) for n, fmt in enumerate(formats)}


def release(client: redis.Redis, feed_id: str, token: str, gen: int) -> int:
    """1 released; 0 the feed changed during the render (render again, still locked); 2 it changed and is
    released, a queued render task renders the change; -1 lock lost."""
    script = client.register_script(_RELEASE)
    return int(script(keys=[lock_key(feed_id), gen_key(feed_id), queued_key(feed_id)], args=[token, gen]))


def unlock(client: redis.Redis, feed_id: str, token: str) -> bool:
    """Give the lock up after a failed render, so the sweep or the next change renders at once."""
    return bool(client.register_script(_UNLOCK)(keys=[lock_key(feed_id)], args=[token]))


def first_report_of_broken(client: redis.Redis, article_id: str, stored_json: str) -> bool:
    """True once per stored version of an article that cannot be rendered (then it is only skipped)."""
    digest = hashlib.sha256(stored_json.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return bool(client.register_script(_REPORT_BROKEN)(keys=[key("feeds", "broken")], args=[article_id, digest]))


def set_file_error(client: redis.Redis, feed_id: str, error: str | None) -> bool:
    """Record (or, with None, clear) why the feed's static files could not be written; True if it changed."""
    doc = doc_key(feed_id)
    if error is None:
        return bool(client.hdel(doc, "file_error", "file_error_at"))
    previous = client.hget(doc, "file_error")
    client.hset(doc, mapping={"file_error": error[:500], "file_error_at": f"{time.time():.3f}"})
    return (previous.decode() if isinstance(previous, bytes) else previous) != error[:500]


def feeds_with_file_errors(client: redis.Redis, feed_ids: list[str]) -> list[str]:
    with client.pipeline(transaction=False) as pipe:
        for feed_id in feed_ids:
            pipe.hexists(doc_key(feed_id), "file_error")
        return [feed_id for feed_id, failing in zip(feed_ids, pipe.execute()) if failing]


def validators(client: redis.Redis, feed_id: str, formats: tuple[str, ...]) -> dict[str, tuple[str | None, str | None]]:
    """{fmt: (ETag, Last-Modified)} of the stored documents ((None, None) if never rendered)."""
    values = client.hmget(doc_key(feed_id), [f"{fmt}:{part}" for fmt in formats for part in ("etag", "lm")])
    text = [v.decode() if isinstance(v, bytes) else v for v in values]
    return {fmt: (text[2 * n], text[2 * n + 1]) for n, fmt in enumerate(formats)}


@dataclasses.dataclass(frozen=True)
class RenderStart:
    """What a render reads before it starts (``render_start``)."""

    gen: int  # the feed's gen now
    stored_gen: int | None  # the gen of the stored render (None: never rendered)
    validators: dict[str, tuple[str | None, str | None]]  # as ``validators``
    file_error: bool  # whether its static files carry an error
    files_at: float  # when its static files were last written (0: unknown)


def render_start(client: redis.Redis, feed_id: str, formats: tuple[str, ...]) -> RenderStart:
    """What a render reads before it starts, in one round trip."""
    fields = [f"{fmt}:{part}" for fmt in formats for part in ("etag", "lm")]
    with client.pipeline(transaction=False) as pipe:
        pipe.get(gen_key(feed_id))
        pipe.hmget(doc_key(feed_id), [*fields, "gen", "files_at"])
        pipe.hexists(doc_key(feed_id), "file_error")
        gen, values, file_error = pipe.execute()
    text = [v.decode() if isinstance(v, bytes) else v for v in values]
    stored_gen, files_at = text[len(fields)], text[len(fields) + 1]
    return RenderStart(int(gen or 0), int(stored_gen) if stored_gen is not None else None,
                       {fmt: (text[2 * n], text[2 * n + 1]) for n, fmt in enumerate(formats)}, bool(file_error),
                       float(files_at or 0))


def files_written(client: redis.Redis, feed_id: str) -> None:
    """Note that the feed's static files now hold its stored documents."""
    client.hset(doc_key(feed_id), "files_at", f"{time.time():.3f}")


def etags(client: redis.Redis, feed_id: str, formats: tuple[str, ...]) -> dict[str, str | None]:
    values = client.hmget(doc_key(feed_id), [f"{fmt}:etag" for fmt in formats])
    return {fmt: (v.decode() if isinstance(v, bytes) else v) for fmt, v in zip(formats, values)}


def status(client: redis.Redis, feed_id: str) -> dict[str, object]:
    """What ``syndicate feeds list`` shows: items, updated, renders, gens, ETags."""
    fields = ("items", "updated", "renders", "gen", "rendered_at", "rss:etag", "atom:etag", "json:etag",
              "file_error", "file_error_at")
    values = client.hmget(doc_key(feed_id), fields)
    out: dict[str, object] = {
        f: (v.decode() if isinstance(v, bytes) else v) for f, v in zip(fields, values)
    }
    out["changes"] = current_gen(client, feed_id)
    out["rendering"] = bool(client.exists(lock_key(feed_id)))
    return out


def get_document(client: redis.Redis, feed_id: str, fmt: str) -> tuple[bytes, str, str] | None:
    """(body, etag, last_modified) of a stored document, or None if never rendered."""
    compressed, plain, etag, lm = client.hmget(doc_key(feed_id), *body_fields(fmt), f"{fmt}:etag", f"{fmt}:lm")
    body = body_of(compressed, plain)
    if body is None:
        return None
    return body, (etag.decode() if isinstance(etag, bytes) else etag), (lm.decode() if isinstance(lm, bytes) else lm)
