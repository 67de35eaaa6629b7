"""Write rendered documents under SYNDICATE_FEED_DIR so any static server or CDN can serve them.

Each file is written to a temporary file in the same directory and renamed over
the old one: a reader (nginx, a CDN origin pull) sees either the old document or
the new one, never half of one. There is no fsync: Redis holds the documents
durably and the next render (or ``syndicate feeds rebuild``) rewrites the files,
while an fsync per format per render would cost more than the render itself.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> bool:
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
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; static servers run as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def write_documents(feed_dir: Path, files: dict[str, bytes]) -> list[str]:
    """Write ``{relative path: bytes}``; returns the paths that changed."""
    return [name for name, data in files.items() if write_atomic(feed_dir / name, data)]
