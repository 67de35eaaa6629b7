"""The image and compose files, checked as the tools that read them would (docker is not here).

The Dockerfile is parsed by BuildKit's own parser (the ``dockerfile`` package), the
compose file is validated against the Compose specification's JSON Schema as shipped
in check-jsonschema, and by Debian's ``docker-compose config`` when that is installed.
The commands the services run are resolved by the real click group, and the health
checks are run against a real API and a real ``syndicate mailbox``.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shlex
import shutil
import smtplib
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import click
import dockerfile
import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from dotenv import dotenv_values

from conftest import ROOT, free_port, wait_for

from syndicate.cli.main import cli

COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load(COMPOSE_TEXT)  # PyYAML resolves the `<<: *syndicate` merges
ENV_EXAMPLE = dotenv_values(ROOT / ".env.example")
SERVICES = COMPOSE["services"]
SYNDICATE_SERVICES = {name: s for name, s in SERVICES.items() if s.get("command", [None])[0] == "syndicate"}
# ${VAR}, ${VAR:-default}, ${VAR:?message} and $VAR; `$$` is a literal dollar.
VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
REQUIRED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?")


def _stages() -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for command in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if command.cmd == "FROM":
            stages.append([])
        stages[-1].append(command)
    return stages


def _only(stage: list[dockerfile.Command], cmd: str) -> list[dockerfile.Command]:
    return [c for c in stage if c.cmd == cmd]


def _env(stage: list[dockerfile.Command]) -> dict[str, str]:
    values: dict[str, str] = {}
    for command in _only(stage, "ENV"):
        values.update(zip(command.value[::2], command.value[1::2]))
    return values


def _clean_environ() -> dict[str, str]:
    # The test run sets SYNDICATE_* itself; compose must see only what .env provides.
    return {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}


# --- Dockerfile --------------------------------------------------------------------

def test_the_image_is_built_in_two_stages_and_installs_the_wheel():
    build, final = _stages()
    assert len(build[0].value) == 3 and build[0].value[1].upper() == "AS", "the build stage needs a name"
    name = build[0].value[2]
    wheels = [" ".join(c.value) for c in _only(build, "RUN") if re.search(r"\bpip wheel\b", " ".join(c.value))]
    assert len(wheels) == 1
    # Every dependency at the version CI tested; the final stage can only install those wheels.
    assert re.search(r"(-c|--constraint) constraints\.txt\b", wheels[0]), wheels[0]
    installs = [c for c in _only(final, "RUN") if "pip install" in " ".join(c.value)]
    assert len(installs) == 1
    assert f"from={name}" in " ".join(installs[0].flags), "the final stage takes its wheels from the build stage"
    assert "--no-index" in installs[0].value[0] and installs[0].value[0].split()[-1] == "syndicate"
    # No stage installs from the source tree: no editable install, no `pip install .`.
    for command in _only(build + final, "RUN"):
        for words in (shlex.split(part) for part in re.split(r"&&|;", " ".join(command.value))):
            if words[:2] == ["pip", "install"] or words[2:4] == ["pip", "install"]:
                assert not {"-e", "--editable", "."} & set(words), command.original


def test_the_image_runs_as_a_user_that_owns_data():
    _, final = _stages()
    users = _only(final, "USER")
    assert users, "the final stage sets no USER, so it runs as root"
    user = users[-1].value[0]
    uid = user.split(":")[0]
    assert uid not in ("root", "0") and uid.isdigit()
    assert final.index(users[-1]) > max(final.index(c) for c in _only(final, "RUN")), "USER comes after the installs"
    setup = " ".join(" ".join(c.value) for c in _only(final, "RUN"))
    assert f"--uid {uid}" in setup and re.search(rf"chown -R {re.escape(user)} /data\b", setup)
    assert _env(final)["SYNDICATE_DATA_DIR"] == "/data"


def test_the_healthcheck_asks_the_api_with_python_only():
    _, final = _stages()
    (check,) = _only(final, "HEALTHCHECK")
    assert check.json and check.value[0] == "CMD"
    argv = list(check.value[1:])
    assert argv[0] == "python" and "/healthz" in argv[-1]
    assert not {"curl", "wget"} & set(" ".join(argv).split())


def _run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    (check,) = _only(_stages()[1], "HEALTHCHECK")
    argv = [sys.executable, *check.value[2:]]
    env = {**_clean_environ(), "SYNDICATE_API_PORT": str(port)}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


def test_the_healthcheck_passes_on_a_live_api_and_fails_without_one(api_server):
    assert _run_healthcheck(urlsplit(api_server).port).returncode == 0
    assert _run_healthcheck(free_port()).returncode != 0


def test_the_image_copies_only_what_the_wheel_is_built_from():
    build, final = _stages()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_dirs = project["tool"]["setuptools"]["package-dir"].values()
    needed = {"pyproject.toml", project["project"]["readme"], *package_dirs, "constraints.txt"}
    copied = {src for c in _only(build, "COPY") if not any(f.startswith("--from") for f in c.flags)
              for src in c.value[:-1]}
    assert copied == needed
    # The final stage takes nothing from the build context: schemas and templates are in the wheel.
    from_context = [c for c in _only(final, "COPY") if not any(f.startswith("--from") for f in c.flags)]
    assert from_context == []
    assert "SYNDICATE_SCHEMA_DIR" not in _env(final)


def test_the_build_context_holds_only_what_the_dockerfile_copies():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "the context starts empty"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {src for stage in _stages() for c in _only(stage, "COPY")
              if not any(f.startswith("--from") for f in c.flags) for src in c.value[:-1]}
    assert allowed == copied
    assert not allowed & {"var", ".venv", ".git", ".env"}


# --- docker-compose.yml --------------------------------------------------------------

def test_compose_file_matches_the_compose_specification():
    source = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(source.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert not problems


def test_the_schema_check_catches_a_broken_service():
    # The same check must fail on a mistake a hand edit makes, or it proves nothing.
    source = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(source.read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(COMPOSE))
    broken["services"]["api"]["port"] = ["8000:8000"]
    errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))
    assert errors and errors[0].json_path.startswith("$.services.api")


def _docker_compose(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("Debian's docker-compose is not installed (apt-get install docker-compose)")
    # A copy in a folder of its own, so no .env beside the checkout's file is read.
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    return subprocess.run([binary, "--env-file", str(ROOT / ".env.example"), "config", "-q"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)


def test_docker_compose_accepts_the_file_with_the_sample_env_and_secrets(tmp_path):
    secrets = {name: "s3cret" for name in REQUIRED.findall(COMPOSE_TEXT)}
    done = _docker_compose({**_clean_environ(), **secrets}, tmp_path)
    assert done.returncode == 0, done.stderr


def test_docker_compose_refuses_to_start_without_the_secrets(tmp_path):
    done = _docker_compose(_clean_environ(), tmp_path)
    assert done.returncode != 0 and "SYNDICATE_API_TOKEN in .env" in done.stderr


def _resolve(argv: list[str]) -> click.Context:
    """Parse ``syndicate ARGV`` as the CLI would, without running it: unknown commands,
    unknown options and values of the wrong type raise click's usage errors."""
    ctx = click.Context(cli, info_name="syndicate")
    command: click.Command = cli
    name, args = "syndicate", list(argv)
    while isinstance(command, click.Group):
        if not args:
            raise click.UsageError(f"{name} needs a subcommand", ctx)
        name, command, args = command.resolve_command(ctx, args)
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=name, parent=ctx)
    return command.make_context(name, args, parent=ctx)


@pytest.mark.parametrize("service", sorted(SYNDICATE_SERVICES))
def test_every_service_command_exists_in_the_cli(service):
    argv = SYNDICATE_SERVICES[service]["command"][1:]
    _resolve(argv)
    shown = CliRunner().invoke(cli, [argv[0], "--help"])
    assert shown.exit_code == 0 and shown.output.startswith("Usage: ")


def test_the_command_check_rejects_what_the_cli_does_not_have():
    for argv in (["wroker", "-Q", "feeds"], ["worker", "--queue", "feeds"], ["worker", "-c", "two"], ["api", "extra"],
                 ["partners"], ["partners", "ad", "acme"]):
        with pytest.raises(click.UsageError):
            _resolve(argv)


def test_every_host_the_services_talk_to_is_a_service():
    env = SERVICES["api"]["environment"]
    redis = urlsplit(env["SYNDICATE_REDIS_URL"])
    assert redis.hostname in SERVICES
    # The SMTP default (and the sample .env) point at the mailbox, on the port it listens on.
    default_smtp = re.fullmatch(r"\$\{SYNDICATE_SMTP_URL:-(.+)\}", env["SYNDICATE_SMTP_URL"]).group(1)
    mailbox = SERVICES["mailbox"]["command"]
    for url in (urlsplit(default_smtp), urlsplit(ENV_EXAMPLE["SYNDICATE_SMTP_URL"])):
        assert url.hostname == "mailbox" and str(url.port) == mailbox[mailbox.index("--port") + 1]


def test_services_without_the_api_turn_the_images_healthcheck_off():
    # Otherwise docker marks every worker unhealthy: the image's check asks an API they do not run.
    for name, service in SYNDICATE_SERVICES.items():
        if service["command"][1] == "api":
            assert "healthcheck" not in service
        else:
            check = service.get("healthcheck", {})
            assert check.get("disable") is True or "test" in check, name


def test_every_variable_compose_uses_is_in_env_example():
    used = {a or b for a, b in VARIABLE.findall(COMPOSE_TEXT)}
    assert used and used == set(ENV_EXAMPLE), "unlisted: %s; unused: %s" % (used - set(ENV_EXAMPLE),
                                                                           set(ENV_EXAMPLE) - used)
    # Secrets compose requires ship empty, so nobody runs an instance on a sample token.
    required = set(REQUIRED.findall(COMPOSE_TEXT))
    assert required == {"SYNDICATE_API_TOKEN", "SYNDICATE_ADMIN_TOKEN", "SYNDICATE_SECRET_KEY"}
    assert all(ENV_EXAMPLE[name] == "" for name in required)


def test_the_mailbox_service_takes_email_and_passes_its_healthcheck(tmp_path):
    # Its command and health check as compose runs them, on a loopback port of our own.
    port = str(free_port())
    argv = list(SERVICES["mailbox"]["command"])
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = port
    argv[argv.index("--dir") + 1] = str(tmp_path / "mail")
    check = [sys.executable, *SERVICES["mailbox"]["healthcheck"]["test"][2:]]
    check[-1] = check[-1].replace("1025", port)
    assert subprocess.run(check, capture_output=True, timeout=30).returncode != 0  # nothing listens yet
    proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", *argv[1:]], env=_clean_environ(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: proc.poll() is not None or subprocess.run(check, capture_output=True, timeout=30)
                 .returncode == 0, timeout=30, message="mailbox health check")
        assert proc.poll() is None, proc.stderr.read().decode()
        with smtplib.SMTP("127.0.0.1", int(port), timeout=10) as smtp:
            smtp.sendmail("news@example.com", ["reader@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
        wait_for(lambda: list((tmp_path / "mail").glob("*.eml")), timeout=10, message="the .eml file")
        (saved,) = (tmp_path / "mail").glob("*.eml")
        assert b"hello" in saved.read_bytes()
    finally:
        proc.terminate()
        proc.wait(15)
