"""The built wheel installs into a fresh virtualenv and works from any folder (issue 10).

One wheel (``pip wheel --no-deps`` of the checkout), one new virtualenv outside the checkout
with the wheel installed under ``constraints.txt`` from the index pip uses here; then, from
a folder that is neither the checkout nor the virtualenv: ``syndicate validate`` on a good
and a bad article, and a short ``syndicate run`` (embedded Redis, JSON logs) that becomes
ready, accepts an article and stops cleanly on Ctrl-C. The JSON Schemas, the templates and
the Celery side (``syndicate.workers``) all come from the installed package.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import requests

from conftest import ROOT, SEED, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _env(**extra: str) -> dict[str, str]:
    """The caller's environment without syndicate's settings or anything pointing into the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SYNDICATE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory) -> Path:
    """syndicate's wheel, built by pip as a user (or the Dockerfile) builds it."""
    base = tmp_path_factory.mktemp("wheel")
    assert ROOT not in base.parents
    # The wheel is built from a copy of what the Dockerfile copies, so a build never writes into
    # the checkout (setuptools leaves its egg-info next to the sources).
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
                            str(base / "dist"), str(source)], cwd=base, env=_env(), capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    return next((base / "dist").glob("syndicate-*.whl"))


@pytest.fixture(scope="module")
def installed(built_wheel, tmp_path_factory) -> Path:
    """The ``bin`` folder of a new virtualenv holding syndicate's wheel and its constrained dependencies."""
    base = tmp_path_factory.mktemp("venv")
    # A virtualenv without pip of its own: this pip installs into it (``--python``), which saves
    # bootstrapping a second pip and installs exactly the same files.
    venv.EnvBuilder(with_pip=False).create(base / "venv")
    bin_dir = base / "venv" / "bin"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install",
                              "--quiet", "-c", str(ROOT / "constraints.txt"), str(built_wheel)], cwd=base, env=_env(),
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    return bin_dir


@pytest.fixture()
def elsewhere(tmp_path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_the_package_comes_from_the_wheel_not_the_checkout(installed, elsewhere):
    shown = subprocess.run([str(installed / "python"), "-c",
                            "import importlib.util as u; print(*(u.find_spec(m).origin for m in "
                            "('syndicate', 'syndicate.workers.app', 'syndicate.cli.main')))"],
                           cwd=elsewhere, env=_env(), capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    for path in shown.stdout.split():
        assert Path(path).is_relative_to(installed.parent), path


def test_the_wheel_carries_every_file_of_the_package(built_wheel):
    """Schemas, templates, stylesheets: a file the package-data globs miss is missing in production."""
    import zipfile

    package = ROOT / "src" / "syndicate"
    expected = {f"syndicate/{p.relative_to(package).as_posix()}" for p in package.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    with zipfile.ZipFile(built_wheel) as wheel:
        shipped = {name for name in wheel.namelist() if name.startswith("syndicate/")}
    assert not expected - shipped, f"left out of the wheel: {sorted(expected - shipped)}"


def test_validate_from_another_folder(installed, elsewhere):
    shutil.copy(SEED, elsewhere / "story.json")
    bad = json.loads(SEED.read_text(encoding="utf-8"))
    bad["headline"] = ""
    del bad["byline"]
    (elsewhere / "bad.json").write_text(json.dumps(bad), encoding="utf-8")

    good = subprocess.run([str(installed / "syndicate"), "validate", "story.json"], cwd=elsewhere, env=_env(),
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "story.json: valid" in good.stdout

    rejected = subprocess.run([str(installed / "syndicate"), "validate", "bad.json"], cwd=elsewhere, env=_env(),
                              capture_output=True, text=True)
    assert rejected.returncode == 2, rejected.stdout + rejected.stderr
    assert "$.headline" in rejected.stdout + rejected.stderr
    assert "'byline' is required" in rejected.stdout + rejected.stderr


def test_a_short_run_from_another_folder_logs_json_lines_and_stops_cleanly(installed, elsewhere):
    port = free_port()
    out_path = elsewhere / "run.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([str(installed / "syndicate"), "run", "-c", "1"], cwd=elsewhere,
                                env=_env(SYNDICATE_API_PORT=str(port), SYNDICATE_LOG_FORMAT="json",
                                         PYTHONUNBUFFERED="1"),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    logs = elsewhere / "var" / "logs"
    try:
        def ready() -> bool:
            assert proc.poll() is None, out_path.read_text()
            try:
                return requests.get(f"{url}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        # Ready: the store, the broker and a worker on every queue answer.
        wait_for(ready, timeout=120, interval=0.3, message="/readyz of the installed syndicate run")
        token = json.loads((elsewhere / "var" / "secrets.json").read_text())["SYNDICATE_API_TOKEN"]
        posted = requests.post(f"{url}/v1/articles", data=SEED.read_bytes(), timeout=10,
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert posted.status_code == 202, posted.text
        # A page rendered from the package's templates.
        assert requests.get(f"{url}/console/login", timeout=10).status_code == 200
    except BaseException:
        for log in sorted(logs.glob("*.log")):
            print(f"==== {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, out_path.read_text()[-3000:]
    assert "stopped cleanly" in out_path.read_text()

    # Every line each part logged is JSON, Celery's notices at stop included.
    shutdown_notices = []
    for log in sorted(logs.glob("*.log")):
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            try:
                record = json.loads(line)
            except ValueError:
                raise AssertionError(f"{log.name} line {number} is not JSON: {line!r}") from None
            if "Warm shutdown" in str(record.get("message")):
                shutdown_notices.append(log.name)
    assert set(shutdown_notices) == {"worker-main.log", "worker-feeds.log", "worker-webhooks.log"}, shutdown_notices
