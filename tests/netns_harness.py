"""Several hosts on one machine: Linux network namespaces joined by veth pairs to one bridge.

The first namespace is the hub (the store's host): it holds a bridge, and every other
namespace is joined to it by a veth pair, all on one /24 that exists only inside these
namespaces. A process runs on a host through ``ip netns exec``; cutting a host's link
(``ip link set ... down``) is a network partition of that host alone. The test process
itself stays outside: it reads Redis through the server's unix socket and the sinks'
records through files, so no address outside the namespaces is ever used.

Needs root and iproute2 (``ip netns``); tests skip with a message otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import ROOT

SUBNET = "10.231.0"


def skip_unless_namespaces() -> None:
    if os.geteuid() != 0:
        pytest.skip("multi-host tests need root for network namespaces (CI runs as root)")
    if not shutil.which("ip"):
        pytest.skip("multi-host tests need iproute2's `ip` (apt-get install iproute2)")
    probe = f"synprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class Hosts:
    """``Hosts(["store", "web1", "web2"])``: host name -> namespace, each with an address on one bridge."""

    def __init__(self, names: list[str]) -> None:
        skip_unless_namespaces()
        self.tag = uuid.uuid4().hex[:5]
        self.names = names
        self.ns = {name: f"syn{self.tag}-{name}" for name in names}
        self.addr = {name: f"{SUBNET}.{i + 1}" for i, name in enumerate(names)}
        self.procs: list[subprocess.Popen] = []
        hub = self.ns[names[0]]
        try:
            for name in names:
                _ip("netns", "add", self.ns[name])
                _ip("-n", self.ns[name], "link", "set", "lo", "up")
            _ip("-n", hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", hub, "addr", "add", f"{self.addr[names[0]]}/24", "dev", "br0")
            _ip("-n", hub, "link", "set", "br0", "up")
            for i, name in enumerate(names[1:], start=1):
                outer, inner = f"sy{self.tag}h{i}", f"sy{self.tag}p{i}"
                _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
                _ip("link", "set", outer, "netns", hub)
                _ip("link", "set", inner, "netns", self.ns[name])
                _ip("-n", hub, "link", "set", outer, "master", "br0")
                _ip("-n", hub, "link", "set", outer, "up")
                _ip("-n", self.ns[name], "link", "set", inner, "name", "eth0")
                _ip("-n", self.ns[name], "addr", "add", f"{self.addr[name]}/24", "dev", "eth0")
                _ip("-n", self.ns[name], "link", "set", "eth0", "up")
        except Exception:
            self.close()
            raise

    def run(self, host: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        """Start ``argv`` on ``host`` (``ip netns exec`` execs it: the pid is the command's own)."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns[host], *argv], env=env, cwd=ROOT,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def syndicate(self, host: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        return self.run(host, [sys.executable, "-m", "syndicate.cli.main", *args], env, log)

    def cut(self, host: str) -> None:
        """Take ``host``'s only link down: it can reach no other host until ``restore``."""
        _ip("-n", self.ns[host], "link", "set", "eth0", "down")

    def restore(self, host: str) -> None:
        _ip("-n", self.ns[host], "link", "set", "eth0", "up")

    @staticmethod
    def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def redis_argv(binary: str, bind: str, port: int, data_dir: Path) -> list[str]:
    """A redis-server on ``bind:port`` with AOF, plus a unix socket the test reads through."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return [binary, "--bind", bind, "--port", str(port), "--protected-mode", "no", "--dir", str(data_dir),
            "--unixsocket", str(data_dir / "redis.sock"), "--unixsocketperm", "700",
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
            "--logfile", str(data_dir / "redis.log")]


# A webhook endpoint on a host: answers 204 and appends each request as one JSON line to a file.
SINK_SCRIPT = r"""
import http.server, json, sys, threading
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        line = json.dumps({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode("utf-8", "replace")})
        with lock, open(path, "a") as out:
            out.write(line + "\n")
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((host, port), H).serve_forever()
"""


def sink_requests(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line being written
    return out
