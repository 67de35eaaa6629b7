"""``syndicate feeds mirror DIR``: each web host's folder holds the stored feeds' exact bytes.

Real processes throughout: ``syndicate worker`` renders, two ``syndicate feeds mirror``
processes follow the store into two folders, and the checks compare both folders with
the documents the API serves (the stored bytes). A mirror killed while feeds change
catches up when it starts again; one that falls behind a trimmed change stream writes
every feed again instead of missing the trimmed changes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from conftest import ROOT, unique_article, wait_for
from feeds_fixtures import folder_files, stored_body, stored_feed_files


def stored_files(dep) -> dict[str, bytes]:
    raw = redis.Redis.from_url(dep.redis_url)
    try:
        return stored_feed_files(raw, dep.prefix)
    finally:
        raw.close()


class MirrorProc:
    def __init__(self, dep, folder: Path, name: str) -> None:
        self.dep, self.folder, self.log = dep, folder, dep.tmp / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "MirrorProc":
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", "feeds", "mirror", str(self.folder)],
                                         env=self.dep.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def in_step(dep, mirror: MirrorProc, timeout: float = 60) -> dict[str, bytes]:
    """Wait until ``mirror``'s folder holds exactly the stored files (and every render is done)."""
    def same():
        stored = stored_files(dep)
        return stored if stored and folder_files(mirror.folder) == stored else None

    return wait_for(same, timeout=timeout, interval=0.2,
                    message=f"{mirror.folder} to match the stored feeds; mirror log: {mirror.text()[-1500:]}")


def publish_rendered(dep, sections: list[str]) -> list[str]:
    """Publish one story per section and wait until each section's feed has rendered it."""
    tag = uuid.uuid4().hex[:6]
    ids = []
    for section in sections:
        article = unique_article(section=f"{section}{tag}")
        dep.publish(article)
        ids.append(article["id"])
    raw = redis.Redis.from_url(dep.redis_url)
    try:
        wait_for(lambda: all(stored_body(raw, dep.prefix, f"sections/{s}{tag}", "json") for s in sections)
                 and all(i.encode() in (stored_body(raw, dep.prefix, "all", "json") or b"") for i in ids),
                 timeout=60, interval=0.2, message="the new stories rendered")
    finally:
        raw.close()
    return ids


@pytest.fixture()
def rendering(deployment):
    # The worker writes no static files of its own: the mirrors are the web hosts' only copy.
    deployment.env["SYNDICATE_FEED_FILES"] = "off"
    deployment.start_worker("render", "ingest,feeds", concurrency=1)
    return deployment


def test_two_mirrors_hold_the_same_bytes_and_a_restarted_one_catches_up(rendering, tmp_path):
    dep = rendering
    publish_rendered(dep, ["world", "sport"])
    one = MirrorProc(dep, tmp_path / "web1", "mirror1").start()
    two = MirrorProc(dep, tmp_path / "web2", "mirror2").start()
    try:
        files = in_step(dep, one)
        in_step(dep, two)
        assert folder_files(two.folder) == files == folder_files(one.folder)
        assert {"all.rss", "all.atom", "all.json"} <= set(files)
        assert "in sync:" in one.text()

        # Changes while both run reach both folders.
        publish_rendered(dep, ["science"])
        in_step(dep, one)
        in_step(dep, two)
        assert folder_files(one.folder) == folder_files(two.folder)

        # A mirror killed outright misses changes, then catches up from the store at start.
        two.signal(signal.SIGKILL)
        two.proc.wait()
        publish_rendered(dep, ["culture", "business"])
        after = in_step(dep, one)
        assert folder_files(two.folder) != after
        two.start()
        assert in_step(dep, two) == after == folder_files(two.folder)
        assert one.stop() == 0 and two.stop() == 0
        assert "mirror stopped" in one.text()
        assert not folder_files(dep.tmp / "data" / "feeds")  # SYNDICATE_FEED_FILES=off: no worker files
    finally:
        one.stop()
        two.stop()


def test_a_mirror_behind_a_trimmed_change_stream_writes_every_feed_again(rendering, tmp_path):
    dep = rendering
    publish_rendered(dep, ["local"])
    mirror = MirrorProc(dep, tmp_path / "web", "mirror").start()
    try:
        in_step(dep, mirror)
        mirror.signal(signal.SIGSTOP)  # asleep: it reads nothing while these change
        publish_rendered(dep, ["alpha", "beta", "gamma"])
        # Only the newest change is left, as when a long-stopped mirror's changes were trimmed away.
        dep.redis.xtrim(dep.key("feeds", "changes"), maxlen=1, approximate=False)
        mirror.signal(signal.SIGCONT)
        in_step(dep, mirror)
        assert "trimmed past the last one applied" in mirror.text()
    finally:
        mirror.signal(signal.SIGCONT)
        mirror.stop()


def test_once_writes_every_feed_and_exits(rendering, tmp_path):
    dep = rendering
    publish_rendered(dep, ["once"])
    done = dep.cli("feeds", "mirror", "--once", str(tmp_path / "static"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert folder_files(tmp_path / "static") == stored_files(dep)
    assert "files written" in done.stdout
    # Nothing changed: a second pass rewrites nothing.
    again = dep.cli("feeds", "mirror", "--once", str(tmp_path / "static"))
    assert again.returncode == 0 and ": 0 files written" in again.stdout


def test_a_mirror_started_before_the_store_waits_for_it(tmp_path):
    from faults_harness import RedisServer

    from conftest import Deployment

    server = RedisServer(tmp_path / "redis")
    dep = Deployment(tmp_path, redis_url=server.url)
    mirror = MirrorProc(dep, tmp_path / "web", "mirror").start()
    try:
        wait_for(lambda: "store unreachable" in mirror.text(), timeout=30, message="the mirror to report the store down")
        assert mirror.proc.poll() is None
        server.start()
        dep.start_worker("render", "ingest,feeds", concurrency=1)
        publish_rendered(dep, ["late"])
        in_step(dep, mirror)
        assert "working again" in mirror.text()
    finally:
        mirror.stop()
        dep.close()
        server.kill()
