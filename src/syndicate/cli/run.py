"""``syndicate run`` (everything in one command), ``worker``, ``beat`` and ``api``."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from .. import instance
from ..config import data_dir as configured_data_dir
from ..config import get_settings, reset_settings, start_warnings
from ..errors import ConfigError, SyndicateError
from .common import handle_errors

ALL_QUEUES = "ingest,feeds,webhooks,newsletter"
# Messages each feeds worker thread reserves under `syndicate run`. Feed tasks are short (a render
# holds its feed's lock 30 s at most), so reserving a few keeps a thread from waiting for the broker
# between two of them, and a render task that arrives while its feed renders in another thread is
# folded into that render (bench/sustained.py: 1.6 feed renders per article became 0.6, a quarter less
# CPU per article). The other workers keep 1: a newsletter send, or a partner holding every attempt
# thread, can take minutes, and a message reserved behind it past the visibility timeout would be
# delivered twice.
FEEDS_PREFETCH = 4


def _secrets(data_dir: Path) -> dict[str, str]:
    """Tokens and the signing key for a local run: generated once, kept in the data dir."""
    path = data_dir / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {
        "SYNDICATE_API_TOKEN": secrets.token_urlsafe(24),
        "SYNDICATE_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "SYNDICATE_SECRET_KEY": secrets.token_urlsafe(32),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)
    return values


def _lock_data_dir(data_dir: Path):
    """One `syndicate run` per data directory: two would share one Redis AOF and beat schedule."""
    import fcntl

    handle = open(data_dir / "run.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise click.ClickException(
            f"syndicate is already running with data in {data_dir}; stop it first, "
            "or give this one its own SYNDICATE_DATA_DIR"
        ) from None
    return handle


def _check_api_port(host: str, port: int) -> None:
    """Refuse to start when the API's port is taken, before anything says it is running."""
    from ..embedded import port_in_use

    if port_in_use(host, port):
        raise SyndicateError(f"port {port} on {host} is already in use (another syndicate run or another "
                             "server); stop that one, or choose a free port with SYNDICATE_API_PORT")


def _wait_healthy(url: str, api: subprocess.Popen, timeout: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.poll() is not None:
            # The API cannot start (a port in use, a bad setting): restarting would not help.
            raise click.ClickException(_exited(api))
        try:
            # Only an answer while our API child still runs is ours: another server on the port
            # would answer too, and our child would be exiting with "address already in use".
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200 and api.poll() is None:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise click.ClickException(f"the API did not answer on {url}/healthz within {timeout:.0f}s")


def _exited(proc: subprocess.Popen) -> str:
    path = getattr(proc, "log_path", None)
    tail = ""
    if path is not None and path.exists():
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-15:])
    return f"{' '.join(proc.args[3:5])} exited with code {proc.returncode}; its log is {path}:\n{tail}"


class Supervisor:
    """Starts the children and restarts one that dies, with backoff, instead of stopping everything.

    A worker can die of a broker fault, a crash in a library, or the OOM killer; the rest of
    the service keeps going meanwhile and the dead child comes back after 1, 2, 4 … 60 s
    (the delay starts again at 1 s once a child has stayed up for a minute).
    """

    STABLE_AFTER = 60.0
    MAX_BACKOFF = 60.0

    def __init__(self, children: dict[str, list[str]], env: dict[str, str], log_dir: Path) -> None:
        self.children = children
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.started: dict[str, float] = {}
        self.failures: dict[str, int] = {}
        self.restart_at: dict[str, float] = {}

    def start(self, name: str) -> subprocess.Popen:
        # Each child logs to its own file, so the terminal shows what a user needs to see.
        with open(self.log_dir / f"{name}.log", "ab") as log_file:
            proc = subprocess.Popen(self.children[name], env=self.env, stdout=log_file,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        proc.log_path = self.log_dir / f"{name}.log"  # type: ignore[attr-defined]
        self.procs[name] = proc
        self.started[name] = time.monotonic()
        return proc

    def start_all(self) -> None:
        for name in self.children:
            self.start(name)

    def check(self) -> None:
        """Notice children that died and restart those whose backoff has passed."""
        now = time.monotonic()
        for name, proc in list(self.procs.items()):
            if name in self.restart_at:
                if now >= self.restart_at[name]:
                    del self.restart_at[name]
                    self.start(name)
                    click.echo(f"{name} restarted (pid {self.procs[name].pid})")
                continue
            if proc.poll() is None:
                continue
            if now - self.started[name] >= self.STABLE_AFTER:
                self.failures[name] = 0
            delay = min(2.0 ** self.failures.get(name, 0), self.MAX_BACKOFF)
            self.failures[name] = self.failures.get(name, 0) + 1
            self.restart_at[name] = now + delay
            click.echo(f"{name} exited with code {proc.returncode}; restarting it in {delay:.0f}s "
                       f"(its log: {proc.log_path})", err=True)  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.restart_at.clear()
        _stop(list(self.procs.values()))


def _stop(procs: list[subprocess.Popen], timeout: float = 40.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # Celery: warm shutdown, finish the running task.
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@click.command("run")
@click.option("--examples", "examples", type=click.Path(exists=True, file_okay=False), default=None,
              help="Publish the article files in this directory once everything is up.")
@click.option("--concurrency", "-c", default=4, show_default=True,
              help="Tasks each worker runs at once (threads of its one process).")
@click.option("--exit-after", type=float, default=None, hidden=True,
              help="Stop by itself after this many seconds (used by the end-to-end test).")
@handle_errors
def run_cmd(examples: str | None, concurrency: int, exit_after: float | None) -> None:
    """Start Redis (embedded unless SYNDICATE_REDIS_URL is set), the API, the workers and beat. Ctrl-C stops all."""
    from ..embedded import EmbeddedRedis

    data_dir = configured_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_data_dir(data_dir)
    # We hold the data dir's lock, so an instance file left there is a killed run's: drop it
    # before settings would read it.
    instance.instance_path(data_dir).unlink(missing_ok=True)
    try:
        settings = get_settings()
        _check_api_port(settings.api_host, settings.api_port)
    except BaseException:
        lock.close()
        raise
    for line in start_warnings(settings):
        click.echo(line, err=True)
    embedded = None
    env = dict(os.environ)
    for name, value in _secrets(settings.data_dir).items():
        env.setdefault(name, value)
        os.environ.setdefault(name, value)
    me = [sys.executable, "-m", "syndicate.cli.main"]
    supervisor: Supervisor | None = None

    def stop_all(*_args: object) -> None:
        # Only the first signal interrupts; later ones (Ctrl-C twice, the terminal and a
        # supervisor both signalling) must not cut the shutdown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    try:
        if not settings.redis_url:
            raw_port = os.environ.get("SYNDICATE_EMBEDDED_REDIS_PORT") or "0"
            if not raw_port.isdigit() or int(raw_port) > 65535:
                raise ConfigError(f"SYNDICATE_EMBEDDED_REDIS_PORT must be a port number, got {raw_port!r}")
            port = int(raw_port) or None
            embedded = EmbeddedRedis(settings.data_dir / "redis", port=port, appendfsync=settings.redis_appendfsync)
            embedded.start()
            env["SYNDICATE_REDIS_URL"] = os.environ["SYNDICATE_REDIS_URL"] = embedded.url
            click.echo(f"embedded Redis {embedded.url} (data in {embedded.data_dir}, "
                       f"AOF on, appendfsync {settings.redis_appendfsync})")
        if not os.environ.get("SYNDICATE_SMTP_URL"):
            # No SMTP server configured: a local mailbox keeps every email in the data dir.
            from ..embedded import free_port

            smtp_port = free_port()
            env["SYNDICATE_SMTP_URL"] = os.environ["SYNDICATE_SMTP_URL"] = f"smtp://127.0.0.1:{smtp_port}"
            mailbox_argv = [*me, "mailbox", "--port", str(smtp_port)]
        else:
            mailbox_argv = None
        reset_settings()
        settings = get_settings()
        log_dir = settings.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        # One metrics directory for the API and every worker: the API's /metrics carries theirs.
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.data_dir / "metrics"))
        env.pop("SYNDICATE_WORKER_METRICS_PORT", None)
        from ..metrics import reset_dir

        reset_dir(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
        children = {
            "api": [*me, "api"],
            # Webhooks get their own worker: a hanging partner can never hold up feeds or email. So do
            # feeds: under a burst their renders are most of the work, and sharing a worker with the
            # fan-out left every channel waiting behind them. Each worker runs its tasks in threads of
            # one process: with a prefork pool every message is handed to a child process and its
            # outcome handed back, which cost about a fifth of the CPU per story (bench/sustained.py:
            # 19.3 ms per story with prefork pools, 15.3 ms with threads).
            "worker-main": [*me, "worker", "-Q", "ingest,newsletter", "-P", "threads", "-c", str(concurrency),
                            "-n", "main@%h"],
            "worker-feeds": [*me, "worker", "-Q", "feeds", "-P", "threads", "-c", str(concurrency),
                             "-n", "feeds@%h", "--prefetch-multiplier", str(FEEDS_PREFETCH)],
            "worker-webhooks": [*me, "worker", "-Q", "webhooks", "-P", "threads", "-c", str(concurrency),
                                "-n", "webhooks@%h"],
            "beat": [*me, "beat"],
        }
        if mailbox_argv:
            children["mailbox"] = mailbox_argv
        supervisor = Supervisor(children, env, log_dir)
        supervisor.start_all()
        host = settings.api_host if settings.api_host not in ("0.0.0.0", "::") else "127.0.0.1"
        url = f"http://[{host}]:{settings.api_port}" if ":" in host else f"http://{host}:{settings.api_port}"
        _wait_healthy(url, supervisor.procs["api"])
        instance.write(settings.data_dir, redis_url=settings.redis_url, api_url=url,
                       public_url=settings.public_url, smtp_url=settings.smtp_url)
        if examples:
            subprocess.run([*me, "publish", "--api", url, examples], env=env, check=False)
        click.echo("")
        click.echo("syndicate is running:")
        click.echo(f"  API docs        {url}/docs")
        click.echo(f"  main feeds      {url}/feeds/all.rss  {url}/feeds/all.atom  {url}/feeds/all.json")
        click.echo(f"  static feeds    {settings.feed_dir}")
        click.echo(f"  health          {url}/healthz   readiness {url}/readyz   metrics {url}/metrics")
        click.echo(f"  logs            {log_dir}/")
        if mailbox_argv:
            click.echo(f"  sent email      {settings.data_dir / 'mail'}/  (local mailbox at {settings.smtp_url})")
        click.echo(f"  public URL      {settings.public_url}  (self links, feed_url, unsubscribe links)")
        click.echo(f"  queue status    syndicate status  (any command run here finds this instance "
                   f"through {instance.instance_path(settings.data_dir)})")
        click.echo(f"  ingest token    {env['SYNDICATE_API_TOKEN']}  (admin: {env['SYNDICATE_ADMIN_TOKEN']}; kept in {settings.data_dir / 'secrets.json'})")
        click.echo("Press Ctrl-C to stop.")
        started = time.monotonic()
        while True:
            if embedded and embedded.process is not None and embedded.process.poll() is not None:
                # The embedded Redis died: bring it back on the same port from its AOF; every
                # child reconnects by itself.
                click.echo(f"embedded Redis exited with code {embedded.process.returncode}; restarting it", err=True)
                embedded.start()
            supervisor.check()
            if exit_after is not None and time.monotonic() - started > exit_after:
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        click.echo("stopping…")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        instance.remove(settings.data_dir)
        if supervisor is not None:
            supervisor.stop()
        if embedded:
            embedded.stop()
        lock.close()
    click.echo("stopped cleanly")


@click.command("worker")
@click.option("-Q", "--queues", default=ALL_QUEUES, show_default=True, help="Comma-separated queues to consume.")
@click.option("-c", "--concurrency", default=2, show_default=True, help="Worker processes (prefork) or threads (threads pool).")
@click.option("-n", "--hostname", default=None, help="Worker node name.")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads"]), default="prefork", show_default=True,
              help="prefork: CONCURRENCY processes (CPU-bound work, task time limits enforced); threads: "
                   "CONCURRENCY threads in one process, no hand-over to a child per message (short tasks "
                   "that mostly wait on the network; time limits are not enforced).")
@click.option("--prefetch-multiplier", type=click.IntRange(min=1), default=None,
              help="Messages reserved per process (default 1). More keeps processes busy with short tasks "
                   "while the broker is slow to answer; a reserved message waits for a free process.")
@click.option("--loglevel", default="INFO", show_default=True,
              help="Lowest level logged: DEBUG, INFO, WARNING or ERROR (the format: SYNDICATE_LOG_FORMAT).")
@handle_errors
def worker_cmd(queues: str, concurrency: int, hostname: str | None, pool: str, prefetch_multiplier: int | None,
               loglevel: str) -> None:
    """Run a Celery worker on QUEUES."""
    from .. import metrics

    metrics.prepare_worker(get_settings().worker_metrics_port)  # before the pool forks its children
    from syndicate.workers.app import app

    if pool == "threads":
        from .. import telemetry

        # The tasks run in this process, so it traces them (each prefork child sets up its own after the fork).
        telemetry.setup("syndicate-worker")

    argv = [*_celery_options(loglevel, "worker"), "worker", "-Q", queues, "-c", str(concurrency),
            "--loglevel", loglevel, "--without-gossip", "--without-mingle", "--pool", pool]
    if hostname:
        argv += ["-n", hostname]
    if prefetch_multiplier:
        argv += ["--prefetch-multiplier", str(prefetch_multiplier)]
    app.worker_main(argv)


@click.command("beat")
@click.option("--loglevel", default="INFO", show_default=True,
              help="Lowest level logged: DEBUG, INFO, WARNING or ERROR (the format: SYNDICATE_LOG_FORMAT).")
@handle_errors
def beat_cmd(loglevel: str) -> None:
    """Run the periodic scheduler (reconciler, webhook retries, newsletter editions)."""
    from syndicate.workers.app import app

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.start([*_celery_options(loglevel, "beat"), "beat", "--loglevel", loglevel,
               "-s", str(settings.data_dir / "celerybeat-schedule")])


def _celery_options(loglevel: str, command: str) -> list[str]:
    """Celery's options before the sub-command: ``--quiet`` when the log is JSON lines.

    A malformed SYNDICATE_LOG_FORMAT or level stops here, as one error line, before Celery
    starts. Celery prints its start-up banner to stdout, outside logging, and that text
    would break a log of JSON lines; the same facts are logged as JSON instead. Its notices
    at stop ("worker: Warm shutdown (MainProcess)") bypass logging too, and ``--quiet``
    keeps them: they are written as JSON lines instead (see ``_say_as_json``).
    """
    from .. import logs

    logs.setup(loglevel)
    if logs.log_format() != "json":
        return []
    import celery.apps.worker

    from syndicate.workers.app import app

    celery.apps.worker.safe_say = _say_as_json

    logging.getLogger("syndicate.workers").info("celery %s starting (broker %s)", command, app.connection().as_uri(),
                                                extra={"argv": sys.argv[1:]})
    return ["--quiet"]


def _say_as_json(msg: str, f: object = None) -> None:
    """Celery's ``safe_say`` for a log of JSON lines: the notice as one JSON line on stderr.

    Celery calls it from a signal handler, so, like Celery's own, it formats the line itself
    and writes it with one ``os.write`` instead of going through a handler and its lock.
    """
    from .. import logs

    record = logging.LogRecord("celery.apps.worker", logging.INFO, __file__, 0, msg.strip(), None, None)
    try:
        os.write(sys.__stderr__.fileno(), (logs.formatter("json").format(record) + "\n").encode())
    except (OSError, ValueError, AttributeError):
        pass  # a notice that cannot be written must never stop the shutdown it announces


@click.command("api")
@click.option("--host", default=None, help="Default: SYNDICATE_API_HOST.")
@click.option("--port", type=int, default=None, help="Default: SYNDICATE_API_PORT.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Server processes sharing the port. Default: SYNDICATE_API_WORKERS.")
@handle_errors
def api_cmd(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the HTTP API with uvicorn (one or more processes on one port)."""
    import uvicorn

    # The options stand for the variables, so the public URL follows them like it follows those.
    if host:
        os.environ["SYNDICATE_API_HOST"] = host
    if port:
        os.environ["SYNDICATE_API_PORT"] = str(port)
    reset_settings()
    settings = get_settings()
    from .. import logs

    logs.setup("INFO")
    for line in start_warnings(settings):
        logging.getLogger("syndicate.api").warning(line)
    # log_config=None: uvicorn's records go through syndicate.logs; its own access log stays off
    # because the app logs each request itself (syndicate.logs.AccessLog), without query strings.
    uvicorn.run("syndicate.api:served_app", factory=True, host=host or settings.api_host,
                port=port or settings.api_port, workers=workers or settings.api_workers,
                log_level="info", access_log=False, log_config=None)


@click.command("mailbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=1025, show_default=True, help="SMTP port to listen on.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Where to keep the messages (default: $SYNDICATE_DATA_DIR/mail).")
def mailbox_cmd(host: str, port: int, directory: str | None) -> None:
    """A local SMTP server that keeps every message as an .eml file (for trying the newsletter)."""
    from ..mailbox import serve

    serve(Path(directory) if directory else get_settings().data_dir / "mail", host, port)


COMMANDS = [run_cmd, worker_cmd, beat_cmd, api_cmd, mailbox_cmd]
