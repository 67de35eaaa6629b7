"""Write rendered documents under SYNDICATE_FEED_DIR so any static server or CDN can serve them.

Each file is written to a temporary file in the same directory, fsynced, and
renamed over the old one; the directory is fsynced once after its renames. A
reader (nginx, a CDN origin pull) sees either the old document or the new one,
never half of one, and a crash or power loss never leaves an empty or partial
file behind a feed's name (a rename can reach the disk before the data it names
unless the data is synced first). It stays cheap: an unchanged document is not
rewritten at all, so the syncs are paid only for formats whose bytes changed,
and a feed's formats are written side by side so their syncs overlap.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a platform that cannot open directories (Windows): the rename is all it offers
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the data itself is already synced
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, sync_dir: bool = True) -> bool:
    """Replace ``path`` with ``data``; False (and no write) if it already holds exactly that."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; static servers run as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        _fsync_dir(path.parent)  # the rename itself survives a crash
    return True


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    """This process's writer threads (a forked worker child starts its own: threads do not survive a fork)."""
    pool = _pools.get(os.getpid())
    if pool is None:
        # setdefault: two task threads of a threads worker may get here at once; an executor starts its
        # threads at its first submit, so the one that loses is never used and costs nothing.
        pool = _pools.setdefault(os.getpid(), ThreadPoolExecutor(max_workers=3, thread_name_prefix="feed-files"))
    return pool


def write_documents(feed_dir: Path, files: dict[str, bytes]) -> list[str]:
    """Write ``{relative path: bytes}``; returns the paths that changed.

    The files are written side by side (each still synced before its rename):
    the disk waits overlap, which takes about half as long as one after the
    other. Every write has finished, or failed, when this returns, so a later
    render's files can never be overtaken by this one's. The three formats of a
    feed share a directory, so it is synced once after all their renames rather
    than once per file.
    """
    names = list(files)
    if len(names) > 1:
        futures = [_pool().submit(write_atomic, feed_dir / name, files[name], False) for name in names]
        wait(futures)
        results = [future.result() for future in futures]  # raises the first failure, once all are done
    else:
        results = [write_atomic(feed_dir / name, files[name], sync_dir=False) for name in names]
    changed = [name for name, written in zip(names, results) if written]
    for directory in sorted({(feed_dir / name).parent for name in changed}):
        _fsync_dir(directory)
    return changed
