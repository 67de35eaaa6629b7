"""The real peers the benchmarks compare against: nginx serving files, wrk as the HTTP load generator.

Both come from Debian's packages. When one is missing the bench installs it with
apt-get if it runs as root on a Debian-like machine, and otherwise stops with a
message that says how to get it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

PACKAGES = {"nginx": "nginx", "wrk": "wrk"}
_NGINX_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")


def which(tool: str) -> str | None:
    found = shutil.which(tool)
    if not found and tool == "nginx":
        found = next((p for p in _NGINX_PATHS if os.access(p, os.X_OK)), None)
    return found


def ensure(*tools: str) -> dict[str, str]:
    """{tool: path}; installs missing tools from Debian's packages when possible, else exits with how to."""
    missing = [t for t in tools if not which(t)]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        packages = [PACKAGES[t] for t in missing]
        print(f"installing {' '.join(packages)} from Debian's packages (apt-get) ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env,
                       capture_output=True)
        missing = [t for t in tools if not which(t)]
    if missing:
        raise SystemExit(f"this benchmark needs {', '.join(missing)}: sudo apt-get install "
                         f"{' '.join(PACKAGES[t] for t in missing)}")
    return {t: which(t) or t for t in tools}


class Nginx:
    """nginx serving ``root`` at ``/{prefix}/`` on 127.0.0.1:port, as a web host would serve feed files."""

    def __init__(self, root: Path, port: int, prefix: str = "feeds", workers: int = 1) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="syndicate-nginx-"))
        self.port = port
        conf = self.dir / "nginx.conf"
        # Run as root, nginx's workers would drop to nobody and find the bench's private temp folders
        # (mode 0700) closed to them: keep the invoking user.
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(f"""
{user}
worker_processes {workers};
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ application/rss+xml rss; application/atom+xml atom; application/feed+json json; }}
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /{prefix}/ {{ alias {root}/; etag on; }}
    }}
}}
""")
        self.conf = conf
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Nginx":
        nginx = ensure("nginx")["nginx"]
        self.proc = subprocess.Popen([nginx, "-c", str(self.conf), "-p", str(self.dir), "-e",
                                      str(self.dir / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def wrk(url: str, seconds: float, connections: int = 16, threads: int = 1,
        headers: dict[str, str] | None = None) -> tuple[float, dict[str, int]]:
    """(requests/s, {status: count}) from wrk; a Lua script counts statuses so an error never counts as speed."""
    tool = ensure("wrk")["wrk"]
    script = Path(tempfile.mkstemp(prefix="syndicate-wrk-", suffix=".lua")[1])
    script.write_text("""
local counts = {}
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function() statuses = {} end
response = function(status) statuses[status] = (statuses[status] or 0) + 1 end
done = function(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write(string.format("STATUS %d %d\\n", k, v)) end
end
""")
    argv = [tool, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "-s", str(script)]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    try:
        out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    finally:
        script.unlink(missing_ok=True)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    statuses = {int(a): int(b) for a, b in re.findall(r"STATUS (\d+) (\d+)", out)}
    return rate, statuses
