"""The README's "A short tour", run as printed against a fresh ``syndicate run`` (issue 10).

The tour's first ``sh`` block starts syndicate (``export`` lines, then ``make run``); this
test runs what the Makefile's ``run`` target runs, with those variables, in a temporary
folder holding what a checkout gives a new user (``examples/`` and ``.venv``). Every
other block is pasted into one bash, in order, as a user pastes them into a second
terminal. Each step (the commands up to a blank line or the lines it shows) must succeed
and print exactly what the README shows on the ``# -> `` lines after it (nothing when it
shows nothing), where ``…`` stands for any text within a line and a ``# -> …`` line for
any number of lines. The only change made to the text is the ports: the API's 8000 and
the partner sink's 9000 become free ones, so the test never collides with a real run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ROOT, free_port, wait_for

pytestmark = pytest.mark.e2e

SHOWN = "# ->"
API_PORT, SINK_PORT = "8000", "9000"


@dataclass
class Step:
    line: int  # where it starts in README.md
    commands: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)


def tour_blocks(readme: str) -> list[tuple[int, list[str]]]:
    """The ``sh`` blocks of the "A short tour" section: (first line number, lines)."""
    lines = readme.splitlines()
    start = lines.index("## A short tour")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    blocks, current, first = [], None, 0
    for number in range(start, end):
        text = lines[number]
        if current is None and text.strip() == "```sh":
            current, first = [], number + 2
        elif current is not None and text.strip() == "```":
            blocks.append((first, current))
            current = None
        elif current is not None:
            current.append(text)
    return blocks


def steps(first: int, lines: list[str]) -> list[Step]:
    """Commands grouped up to a blank line or their shown output; a backslash continues a line."""
    found: list[Step] = []
    step: Step | None = None
    continued = False
    for offset, text in enumerate(lines):
        if text.startswith(SHOWN):
            assert step is not None and not continued, f"README.md:{first + offset}: shown output without a command"
            step.shown.append(text[len(SHOWN) + 1:] if text != SHOWN else "")
            continue
        if not text.strip():
            step, continued = None, False
            continue
        if step is None or (step.shown and not continued):
            step = Step(first + offset)
            found.append(step)
        step.commands.append(text)
        continued = text.endswith("\\")
    return found


def matches(shown: list[str], printed: str) -> bool:
    pattern = ""
    for line in shown:
        if line == "…":
            pattern += r"(?:[^\n]*\n)*?"
        else:
            pattern += r"[^\n]*".join(re.escape(part) for part in line.split("…")) + r"\n"
    # A terminal shows HTTP's CRLF line ends as plain ones.
    text = printed.replace("\r\n", "\n")
    text = text if text.endswith("\n") or not text else text + "\n"
    return re.fullmatch(pattern, text) is not None


def start_command(makefile: str, first_block: list[str]) -> tuple[dict[str, str], list[str]]:
    """The variables the tour exports before ``make run``, and what ``make run`` runs."""
    assert first_block[-1] == "make run", first_block
    env = {}
    for line in first_block[:-1]:
        name, _, value = line.removeprefix("export ").partition("=")
        assert line.startswith("export ") and name.isidentifier(), f"not an export line: {line!r}"
        env[name] = value
    recipe = re.search(r"^run:.*\n\t(.+)$", makefile, re.M).group(1)
    return env, shlex.split(recipe.replace("$(BIN)/", ".venv/bin/"))


def test_the_readme_parser_reads_steps_and_placeholders():
    block = ["A=1", "curl x \\", "  -d y", f"{SHOWN} {{\"id\":\"evt_…\"}} 202", "", "echo a", f"{SHOWN} …"]
    found = steps(10, block)
    assert [(s.line, s.commands, s.shown) for s in found] == [
        (10, ["A=1", "curl x \\", "  -d y"], ['{"id":"evt_…"} 202']), (15, ["echo a"], ["…"])]
    assert matches(['{"id":"evt_…"} 202'], '{"id":"evt_1a2b"} 202\n')
    assert not matches(['{"id":"evt_…"} 202'], '{"id":"evt_1a2b"} 200\n')
    assert not matches(['{"id":"evt_…"} 202'], '{"id":"evt_1"} 202\nmore\n')
    assert matches(["first", "…"], "first\nsecond\nthird\n") and matches(["first", "…"], "first\n")
    assert matches([], "") and not matches([], "something\n")


def test_the_readme_tour_runs_as_printed(tmp_path):
    for tool in ("bash", "curl", "sed"):
        if shutil.which(tool) is None:
            pytest.skip(f"the tour needs {tool}: apt-get install {tool}")
    if os.environ.get("SYNDICATE_TEST_EMBEDDED") == "1":
        pytest.skip("the tour always runs on syndicate run's own embedded Redis; `make test` ran it already")
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tour activates .venv: run the tests from the virtualenv (make test)")
    blocks = tour_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    exports, run_argv = start_command((ROOT / "Makefile").read_text(), blocks[0][1])
    tour = [step for first, lines in blocks[1:] for step in steps(first, lines)]
    assert len(tour) >= 10, "the tour lost its steps"

    # What a new user's checkout has, as far as the tour goes.
    home = tmp_path / "checkout"
    home.mkdir()
    (home / "examples").symlink_to(ROOT / "examples")
    (home / ".venv").symlink_to(sys.prefix)
    api_port, sink_port = str(free_port()), str(free_port())

    def ported(text: str) -> str:
        text = text.replace(f"127.0.0.1:{API_PORT}", f"127.0.0.1:{api_port}")
        return re.sub(rf"(?<!\d){SINK_PORT}(?!\d)", sink_port, text)

    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(exports, SYNDICATE_API_PORT=api_port, PYTHONUNBUFFERED="1")
    run_log = tmp_path / "run.out"
    with open(run_log, "wb") as out:
        run = subprocess.Popen(run_argv, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    shell = None
    try:
        wait_for(lambda: "Press Ctrl-C to stop." in run_log.read_text() or run.poll() is not None, timeout=120,
                 interval=0.2, message="syndicate run to come up")
        assert run.poll() is None, run_log.read_text()

        script = ["set -e"]
        for n, step in enumerate(tour):
            script += [f"printf '\\036step {n}\\n'; printf '\\036step {n}\\n' >&2",
                       *(ported(c) for c in step.commands),
                       f"printf '\\n\\036end {n}\\n'"]
        stdout_path, stderr_path = tmp_path / "tour.out", tmp_path / "tour.err"
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            shell = subprocess.Popen(["bash", "-c", "\n".join(script)], cwd=home, env=env, stdout=out, stderr=err,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                shell.wait(300)
            except subprocess.TimeoutExpired:
                _kill_group(shell)  # a step that never ends: the report below names it
        printed = _per_step(stdout_path.read_text(errors="replace"))
        errors = _per_step(stderr_path.read_text(errors="replace"))
        for n, step in enumerate(tour):
            where = f"README.md:{step.line}: " + " ".join(step.commands)[:200]
            assert n in printed and printed[n][1], (
                f"{where}\nfailed (exit {shell.returncode}); it printed:\n{printed.get(n, ('', False))[0]}\n"
                f"stderr:\n{errors.get(n, ('', False))[0][-3000:]}")
            shown = [ported(line) for line in step.shown]
            assert matches(shown, printed[n][0]), (
                f"{where}\nshows:\n" + "\n".join(shown) + f"\nbut printed:\n{printed[n][0]}")
        assert shell.returncode == 0
    finally:
        if shell is not None:
            _kill_group(shell)  # the partner sink, if the tour stopped before killing it
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGINT)
            try:
                run.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    assert run.returncode == 0, run_log.read_text()[-3000:]


def _per_step(text: str) -> dict[int, tuple[str, bool]]:
    """Each step's output, and whether the step reached its end (it succeeded)."""
    found = {}
    for chunk in text.split("\036step ")[1:]:
        head, _, body = chunk.partition("\n")
        body, ended, _ = body.partition("\n\036end ")
        found[int(head)] = (body, bool(ended))
    return found


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_the_partner_sink_accepts_only_what_the_partner_secret_signed():
    import base64
    import importlib.util
    import json
    from datetime import datetime, timezone

    from standardwebhooks.webhooks import Webhook

    spec = importlib.util.spec_from_file_location("partner_sink", ROOT / "examples" / "partner_sink.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    secret = "whsec_" + base64.b64encode(b"partner-secret-0123456789abcdef").decode()
    other = "whsec_" + base64.b64encode(b"another-secret-0123456789abcdef").decode()
    sink = module.Sink(secret)
    body = json.dumps({"type": "article.published", "timestamp": "2026-11-30T07:00:00Z",
                       "data": {"id": "a-1"}}).encode()
    now = datetime.now(timezone.utc)

    def headers(signing_secret: str, msg_id: str) -> dict[str, str]:
        return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": Webhook(signing_secret).sign(msg_id, now, body.decode())}

    assert sink.receive(body, headers(secret, "msg_1")) == (204, "verified msg_1 article.published a-1")
    status, line = sink.receive(body, headers(other, "msg_2"))
    assert status == 401 and line.startswith("REJECTED msg_2")
    tampered = body.replace(b"a-1", b"a-2")
    assert sink.receive(tampered, headers(secret, "msg_3"))[0] == 401
    assert sink.wait_for(1) == ["verified msg_1 article.published a-1"]
