"""Feed files under SYNDICATE_FEED_DIR: temp file + fsync + rename + directory fsync, and nothing when unchanged.

A crash cannot be staged in a test, so this records the real system calls in the order they happen
(each still runs for real) and checks the order that makes a crash safe: the temp file's data is synced
before the rename, and the directory after it.
"""

from __future__ import annotations

import os
import stat

import pytest

from syndicate.feeds import static


@pytest.fixture()
def calls(monkeypatch):
    log: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, **kwargs):
        log.append(("replace", f"{src} -> {dst}"))
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(static.os, "fsync", fsync)
    monkeypatch.setattr(static.os, "replace", replace)
    return log


def test_each_write_syncs_the_data_before_the_rename_and_the_directory_after(tmp_path, calls):
    feed_dir = tmp_path / "feeds"
    files = {f"sections/us.{ext}": f"<{ext}>σύνταξη</{ext}>".encode() for ext in ("rss", "atom", "json")}
    assert sorted(static.write_documents(feed_dir, files)) == sorted(files)

    for name, data in files.items():
        path = feed_dir / name
        assert path.read_bytes() == data
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        rename = next(i for i, (op, arg) in enumerate(calls) if op == "replace" and arg.endswith(f"-> {path}"))
        temp = calls[rename][1].split(" -> ")[0]
        assert ("fsync", temp) in calls[:rename], f"{name}: data not synced before the rename"
    last_rename = max(i for i, (op, _) in enumerate(calls) if op == "replace")
    # One directory sync after all three renames, not one per file: it stays cheap.
    assert calls[last_rename + 1:] == [("fsync", str(feed_dir / "sections"))]
    assert not [p for p in (feed_dir / "sections").iterdir() if p.name.endswith(".tmp")]


def test_unchanged_documents_are_not_rewritten_or_synced(tmp_path, calls):
    files = {"all.rss": b"<rss/>", "all.json": b"{}"}
    static.write_documents(tmp_path, files)
    calls.clear()
    assert static.write_documents(tmp_path, files) == []
    assert calls == []
    assert static.write_documents(tmp_path, {**files, "all.json": b'{"items":[]}'}) == ["all.json"]
    assert [op for op, _ in calls] == ["fsync", "replace", "fsync"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "all.atom"
    static.write_atomic(path, b"<feed>old</feed>")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(static.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        static.write_atomic(path, b"<feed>new</feed>")
    assert path.read_bytes() == b"<feed>old</feed>"
    assert [p.name for p in tmp_path.iterdir()] == ["all.atom"]
