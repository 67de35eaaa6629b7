"""Edition state in Redis: staging, rotation, recipient claims and the sending lease.

Accumulate, then rotate (Mailman's digest shape): every event stages its story
in the list's pending hash; opening an edition RENAMEs that hash to the
edition's own key in the same Lua script that creates the edition record, so a
story staged a moment later lands in the next edition, never in none or two.

Keys (under the deployment prefix):
    nl:pending:{list}        hash   article id -> event id, stories waiting for the next edition
    nl:included:{list}       zset   article id -> time it went out (30 days), so an update is not resent
    nl:editions:{list}       zset   edition id -> opened at, the list's edition history (skipped ones too)
    nl:active                set    editions opened and not yet finished (beat resumes them)
    nl:ed:{eid}              hash   list, slot, kind, state (open|sending|sent|skipped|failed), content, counts
    nl:ed:{eid}:stories      hash   the rotated pending hash
    nl:ed:{eid}:rcpt         zset   the recipients, snapshotted from the confirmed set at build time
    nl:ed:{eid}:status       hash   address -> claimed:{owner} | committing:{owner} | sent:... |
                                    refused:... | retry:... | failed:... | doubt:... | skipped:...
    nl:ed:{eid}:attempts     hash   address -> transient failures so far
                                    (once a sent edition is compacted, ``compact``: only its refused,
                                    failed and doubtful recipients keep a status, rcpt and attempts go)
    nl:ed:{eid}:lease        string the sending task's owner id, with a TTL it keeps renewing

Exactly once: only the lease holder may claim recipients or mark one
"committing", and both Lua scripts check the lease in the same step. A
recipient found "claimed" by a dead sender never reached the end of DATA, so
it is sent again; one found "committing" may have been delivered, so it is
recorded "doubt" and never sent again (at most once, whatever crashes).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from ..store import get_redis, key

INCLUDED_DAYS = 30
HISTORY_KEPT = 1000
FINAL = ("sent", "refused", "failed", "doubt", "skipped")
ENDED = ("sent", "skipped", "failed")  # edition states no sender works on (a failed one waits for `resume`)

_OPEN = """
-- KEYS: ed, pending, stories, list, active, history
-- ARGV: eid, list_id, slot, kind, now, slot_score
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[4]) == 0 then return -1 end
if ARGV[4] == 'scheduled' then
  local last = redis.call('HGET', KEYS[4], 'last_slot')
  if last and tonumber(last) >= tonumber(ARGV[6]) then return 0 end
  redis.call('HSET', KEYS[4], 'last_slot', ARGV[6])
end
local previous = redis.call('HGET', KEYS[4], 'last_edition_at') or ''
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'list', ARGV[2], 'slot', ARGV[3], 'kind', ARGV[4],
           'state', 'open', 'created_at', ARGV[5], 'window_start', previous)
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[3]) end
redis.call('HSET', KEYS[4], 'last_edition_at', ARGV[5])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[1])
local n = redis.call('ZCARD', KEYS[6])
if n > tonumber(ARGV[7]) then redis.call('ZREMRANGEBYRANK', KEYS[6], 0, n - tonumber(ARGV[7]) - 1) end
return 1
"""

_BUILD = """
-- KEYS: ed, rcpt, confirmed, active, included
-- ARGV: state (sending|skipped), now, content, reason, included_cutoff, story ids...
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return 0 end
if ARGV[1] == 'skipped' then
  redis.call('HSET', KEYS[1], 'state', 'skipped', 'reason', ARGV[4], 'built_at', ARGV[2], 'finished_at', ARGV[2])
  redis.call('SREM', KEYS[4], redis.call('HGET', KEYS[1], 'id'))
  return 1
end
redis.call('HSET', KEYS[1], 'state', 'sending', 'built_at', ARGV[2], 'content', ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('ZUNIONSTORE', KEYS[2], 1, KEYS[3])
end
redis.call('HSET', KEYS[1], 'recipients', redis.call('ZCARD', KEYS[2]))
for i = 6, #ARGV do redis.call('ZADD', KEYS[5], ARGV[2], ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[5])
return 1
"""

_CLAIM = """
-- KEYS: lease, rcpt, status, confirmed, sid-of
-- ARGV: owner, ttl_ms, offset, count, now
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local offset = tonumber(ARGV[3])
local members = redis.call('ZRANGE', KEYS[2], offset, offset + tonumber(ARGV[4]) - 1)
local out = {offset + #members}
for _, m in ipairs(members) do
  local st = redis.call('HGET', KEYS[3], m)
  if st and string.sub(st, 1, 11) == 'committing:' then
    redis.call('HSET', KEYS[3], m, 'doubt:' .. ARGV[5] .. ':crashed between the end of DATA and its reply')
  elseif (not st) or string.sub(st, 1, 8) == 'claimed:' or string.sub(st, 1, 6) == 'retry:' then
    if not redis.call('ZSCORE', KEYS[4], m) then
      redis.call('HSET', KEYS[3], m, 'skipped:' .. ARGV[5] .. ':unsubscribed before the send')
    else
      redis.call('HSET', KEYS[3], m, 'claimed:' .. ARGV[1])
      table.insert(out, m)
      table.insert(out, redis.call('HGET', KEYS[5], m) or '')
    end
  end
end
return out
"""

_COMMIT = """
-- KEYS: lease, status   ARGV: owner, ttl_ms, member
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], 'committing:' .. ARGV[1])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _client(client: redis.Redis | None) -> redis.Redis:
    return client or get_redis()


def ed_key(eid: str, *parts: str) -> str:
    return key("nl", "ed", eid, *parts)


def stage(list_id: str, article_id: str, event_id: str, client: redis.Redis | None = None) -> None:
    """Stage a story for the list's next edition (idempotent: one field per article)."""
    _client(client).hset(key("nl", "pending", list_id), article_id, event_id)


def staged(list_id: str, client: redis.Redis | None = None) -> list[str]:
    return list(_client(client).hkeys(key("nl", "pending", list_id)))


def open_edition(eid: str, list_id: str, slot: str, kind: str, slot_score: float,
                 client: redis.Redis | None = None) -> int:
    """Create the edition and rotate the pending stories into it: 1 created, 0 exists/not due, -1 no list."""
    r = _client(client)
    keys = [ed_key(eid), key("nl", "pending", list_id), ed_key(eid, "stories"), key("nl", "list", list_id),
            key("nl", "active"), key("nl", "editions", list_id)]
    return int(r.eval(_OPEN, len(keys), *keys, eid, list_id, slot, kind, time.time(), slot_score, HISTORY_KEPT))


def get_edition(eid: str, client: redis.Redis | None = None) -> dict[str, str]:
    return _client(client).hgetall(ed_key(eid))


def edition_story_ids(eid: str, client: redis.Redis | None = None) -> list[str]:
    return list(_client(client).hkeys(ed_key(eid, "stories")))


def included(list_id: str, article_ids: list[str], client: redis.Redis | None = None) -> set[str]:
    if not article_ids:
        return set()
    scores = _client(client).zmscore(key("nl", "included", list_id), article_ids)
    return {a for a, s in zip(article_ids, scores) if s is not None}


def finish_build(eid: str, list_id: str, content: dict[str, Any] | None, story_ids: list[str],
                 reason: str = "", client: redis.Redis | None = None) -> bool:
    """Store the built content and snapshot the recipients (or record the edition skipped)."""
    now = time.time()
    keys = [ed_key(eid), ed_key(eid, "rcpt"), key("nl", "confirmed", list_id), key("nl", "active"),
            key("nl", "included", list_id)]
    args = ["sending" if content else "skipped", now, json.dumps(content or {}, ensure_ascii=False), reason,
            now - INCLUDED_DAYS * 86400, *story_ids]
    return bool(_client(client).eval(_BUILD, len(keys), *keys, *args))


def acquire_lease(eid: str, owner: str, ttl: float, client: redis.Redis | None = None) -> bool:
    return bool(_client(client).set(ed_key(eid, "lease"), owner, nx=True, px=int(ttl * 1000)))


def release_lease(eid: str, owner: str, client: redis.Redis | None = None) -> None:
    _client(client).eval(_RELEASE, 1, ed_key(eid, "lease"), owner)


def lease_holder(eid: str, client: redis.Redis | None = None) -> str | None:
    return _client(client).get(ed_key(eid, "lease"))


def claim(eid: str, list_id: str, owner: str, ttl: float, offset: int, count: int,
          client: redis.Redis | None = None) -> tuple[int, list[tuple[str, str]]] | None:
    """Claim up to ``count`` recipients from ``offset``: (next offset, [(address, sid)]); None if the lease is lost."""
    keys = [ed_key(eid, "lease"), ed_key(eid, "rcpt"), ed_key(eid, "status"), key("nl", "confirmed", list_id),
            key("nl", "sid-of", list_id)]
    out = _client(client).eval(_CLAIM, len(keys), *keys, owner, int(ttl * 1000), offset, count, f"{time.time():.3f}")
    if out[0] == -1:
        return None
    pairs = [(out[i], out[i + 1]) for i in range(1, len(out), 2)]
    return int(out[0]), pairs


def mark_committing(eid: str, owner: str, ttl: float, address: str, client: redis.Redis | None = None) -> bool:
    keys = [ed_key(eid, "lease"), ed_key(eid, "status")]
    return bool(_client(client).eval(_COMMIT, len(keys), *keys, owner, int(ttl * 1000), address))


def record(eid: str, address: str, status: str, detail: str = "", client: redis.Redis | None = None) -> None:
    _client(client).hset(ed_key(eid, "status"), address, f"{status}:{time.time():.3f}:{detail}")


def record_transient(eid: str, address: str, detail: str, max_attempts: int,
                     client: redis.Redis | None = None) -> bool:
    """Count a transient failure; True if the recipient may be retried, False once it failed for good."""
    r = _client(client)
    attempts = r.hincrby(ed_key(eid, "attempts"), address, 1)
    status = "retry" if attempts < max_attempts else "failed"
    r.hset(ed_key(eid, "status"), address, f"{status}:{time.time():.3f}:{detail}")
    return status == "retry"


def tally(eid: str, client: redis.Redis | None = None) -> dict[str, int]:
    r = _client(client)
    compacted, stored = r.hmget(ed_key(eid), "compacted", "counts")
    if compacted and stored:
        return json.loads(stored)  # the per-recipient records of sent ones are gone (see ``compact``)
    counts = {name: 0 for name in (*FINAL, "pending")}
    for value in r.hvals(ed_key(eid, "status")):
        name = value.split(":", 1)[0]
        counts[name if name in FINAL else "pending"] += 1
    counts["pending"] += max(r.zcard(ed_key(eid, "rcpt")) - sum(counts.values()), 0)
    return counts


def recipient_statuses(eid: str, status: str | None = None, client: redis.Redis | None = None) -> dict[str, str]:
    values = _client(client).hgetall(ed_key(eid, "status"))
    return {a: v for a, v in values.items() if status is None or v.split(":", 1)[0] == status}


def finish(eid: str, retention_days: int, client: redis.Redis | None = None) -> dict[str, int]:
    """Mark the edition sent with its final counts and start the retention clock on its keys."""
    r = _client(client)
    counts = tally(eid, r)
    ttl = retention_days * 86400
    with r.pipeline() as pipe:
        pipe.hset(ed_key(eid), mapping={"state": "sent", "finished_at": time.time(), "counts": json.dumps(counts)})
        pipe.srem(key("nl", "active"), eid)
        _retain(pipe, eid, ttl)
        pipe.execute()
    return counts


# Once an edition is sent, only the recipients with a problem keep their record (memory grows with
# problems, not with subscribers); the edition keeps its counts. See ``compact``.
KEPT_AFTER_COMPACTION = ("refused", "failed", "doubt")


def compact(eid: str, client: redis.Redis | None = None, batch: int = 1000) -> int:
    """Drop the per-recipient records of a sent edition but those of ``KEPT_AFTER_COMPACTION``; returns
    how many went. Only a ``sent`` edition with no lease is compacted: nothing sends it any more (a failed
    one may be resumed, and keeps every record so that nobody is sent twice)."""
    r = _client(client)
    record = r.hmget(ed_key(eid), "state", "counts", "compacted")
    if record[0] != "sent" or not record[1] or r.exists(ed_key(eid, "lease")):
        return 0
    r.hset(ed_key(eid), "compacted", f"{time.time():.3f}")  # from now on tally() answers the stored counts
    status = ed_key(eid, "status")
    total, ttl_ms = r.hlen(status), r.pttl(status)
    kept = {address: value for address, value in r.hscan_iter(status, count=batch)
            if value.split(":", 1)[0] in KEPT_AFTER_COMPACTION}
    # A fresh hash rather than HDELs: a hash emptied in place keeps its table sized for every recipient.
    with r.pipeline() as pipe:
        pipe.unlink(status, ed_key(eid, "rcpt"), ed_key(eid, "attempts"))
        if kept:
            pipe.hset(status, mapping=kept)
            if ttl_ms > 0:
                pipe.pexpire(status, ttl_ms)
        pipe.execute()
    return total - len(kept)


def finished_editions(older_than: float, client: redis.Redis | None = None) -> list[str]:
    """Sent editions of every list, finished more than ``older_than`` seconds ago and not yet compacted."""
    r = _client(client)
    cutoff = time.time() - older_than
    out = []
    for list_id in r.smembers(key("nl", "lists")):
        eids = r.zrangebyscore(key("nl", "editions", list_id), "-inf", cutoff)
        with r.pipeline(transaction=False) as pipe:
            for eid in eids:
                pipe.hmget(ed_key(eid), "state", "finished_at", "compacted")
            for eid, (state, finished, compacted) in zip(eids, pipe.execute()):
                if state == "sent" and not compacted and finished and float(finished) <= cutoff:
                    out.append(eid)
    return out


def _retain(pipe: Any, eid: str, ttl: int) -> None:
    for part in ((), ("rcpt",), ("status",), ("attempts",), ("stories",)):
        pipe.expire(ed_key(eid, *part), ttl)


def retain(eid: str, retention_days: int, client: redis.Redis | None = None) -> None:
    """Start the retention clock on every key of an edition that ended (a skipped one keeps its rotated stories)."""
    with _client(client).pipeline() as pipe:
        _retain(pipe, eid, retention_days * 86400)
        pipe.execute()


def fail(eid: str, reason: str, retention_days: int, client: redis.Redis | None = None) -> None:
    """Stop an edition that cannot go on without the operator (bad SMTP credentials): not resumed by beat."""
    r = _client(client)
    with r.pipeline() as pipe:
        pipe.hset(ed_key(eid), mapping={"state": "failed", "reason": reason, "failed_at": time.time()})
        pipe.srem(key("nl", "active"), eid)
        _retain(pipe, eid, retention_days * 86400)  # a failed edition nobody resumes is not kept forever
        pipe.execute()


_RESUME = """
if redis.call('HGET', KEYS[1], 'state') ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'sending')
redis.call('HDEL', KEYS[1], 'reason', 'failed_at')
redis.call('SADD', KEYS[2], ARGV[1])
for i = 3, #KEYS do redis.call('PERSIST', KEYS[i]) end
redis.call('PERSIST', KEYS[1])
return 1
"""


def resume(eid: str, client: redis.Redis | None = None) -> bool:
    """Put a failed edition back to sending (after the operator fixed the cause); False if it was not failed."""
    keys = [ed_key(eid), key("nl", "active"), *(ed_key(eid, p) for p in ("rcpt", "status", "attempts", "stories"))]
    return bool(_client(client).eval(_RESUME, len(keys), *keys, eid))


def active_editions(client: redis.Redis | None = None) -> list[str]:
    return sorted(_client(client).smembers(key("nl", "active")))


def history(list_id: str, limit: int = 50, client: redis.Redis | None = None) -> list[dict[str, Any]]:
    r = _client(client)
    out = []
    for eid in r.zrevrange(key("nl", "editions", list_id), 0, limit - 1):
        record = r.hgetall(ed_key(eid))
        if record:
            record.pop("content", None)
            out.append(record)
    return out


class Committer:
    """Marks recipients "committing" for one sender, one Redis round trip per message.

    The round trip also carries the previous recipient's "sent" record, and it is
    written to the socket before the SMTP DATA command and read after the 354, so
    it overlaps the SMTP exchange. A crash before that record lands leaves the
    recipient "committing" (later "doubt"): counted as in doubt, never sent twice.
    The sender keeps one Redis connection for this, outside the pool's churn.
    """

    def __init__(self, eid: str, owner: str, ttl: float, client: redis.Redis) -> None:
        self.eid, self.owner, self.ttl_ms, self.r = eid, owner, int(ttl * 1000), client
        self.status_key, self.lease_key = ed_key(eid, "status"), ed_key(eid, "lease")
        self.pending: list[tuple[str, str]] = []
        self.conn = None
        self.expected = 0

    def record_sent(self, address: str, detail: str) -> None:
        self.pending.append((address, f"sent:{time.time():.3f}:{detail}"))

    def flush(self) -> None:
        if self.pending:
            self.r.hset(self.status_key, mapping=dict(self.pending))
            self.pending.clear()

    def close(self) -> None:
        self.flush()
        if self.conn is not None:
            self.r.connection_pool.release(self.conn)
            self.conn = None

    def _drop(self) -> None:
        # Replies unread or the socket failed: this connection cannot be reused.
        if self.conn is not None:
            self.conn.disconnect()
            self.r.connection_pool.release(self.conn)
            self.conn = None

    def start(self, address: str) -> None:
        commands = [("HSET", self.status_key, a, v) for a, v in self.pending]
        commands.append(("EVAL", _COMMIT, 2, self.lease_key, self.status_key, self.owner, self.ttl_ms, address))
        if self.conn is None:
            self.conn = self.r.connection_pool.get_connection()
        self.expected = len(commands)
        try:
            self.conn.send_packed_command(self.conn.pack_commands(commands))
        except Exception:
            self._drop()
            raise

    def granted(self) -> bool:
        try:
            replies = [self.conn.read_response() for _ in range(self.expected)]
        except Exception:
            self._drop()
            raise
        self.pending.clear()
        return replies[-1] == 1

    def abandon(self) -> None:
        self._drop()  # the records stay pending: HSET is idempotent

    def for_recipient(self, address: str) -> "_Commit":
        return _Commit(self, address)


class _Commit:
    """The ``transport.Commit`` of one message."""

    def __init__(self, committer: Committer, address: str) -> None:
        self.c, self.address = committer, address

    def start(self) -> None:
        self.c.start(self.address)

    def granted(self) -> bool:
        return self.c.granted()

    def abandon(self) -> None:
        self.c.abandon()
