"""`syndicate validate` as a user runs it: the installed console script, exit codes and output.

Exit 0 when every file is a valid article; exit 2 with every problem and its JSON path
otherwise (bad article, malformed JSON, invalid UTF-8, missing file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from syndicate.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples" / "articles"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.json"))
SEED = EXAMPLES_DIR / "us-russia-military-talks.json"


def console_script() -> str:
    # The script installed next to this interpreter (the project's venv), else the one on PATH.
    beside = Path(sys.executable).parent / "syndicate"
    found = str(beside) if beside.exists() else shutil.which("syndicate")
    if not found:
        pytest.fail("the syndicate console script is not installed; run pip install -e . in the venv")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), "validate", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        env=os.environ.copy(),
        cwd=ROOT,
    )


def seed() -> dict[str, Any]:
    return json.loads(SEED.read_text(encoding="utf-8"))


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def bad_article(tmp_path: Path) -> Path:
    doc = seed()
    doc["headline"] = "two\nlines"
    doc["version"] = 0
    doc["body"]["blocks"][3]["text"] = " "
    doc["images"][0]["credit"] = ""
    doc["unknownField"] = True
    del doc["quickLooks"]
    return write(tmp_path / "bad.json", doc)


BAD_PATHS = ["$", "$.body.blocks[3].text", "$.headline", "$.images[0].credit", "$.unknownField", "$.version"]


def problem_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("  $")]


def test_console_script_accepts_every_example() -> None:
    result = run(*map(str, EXAMPLES))
    assert result.returncode == 0, result.stderr
    for path in EXAMPLES:
        assert f"{path}: valid" in result.stdout
    assert result.stderr == ""


def test_console_script_reports_every_problem_with_its_path(bad_article: Path) -> None:
    result = run(str(bad_article))
    assert result.returncode == 2
    assert f"{bad_article}: invalid" in result.stderr
    lines = problem_lines(result.stderr)
    assert [line.split(": ", 1)[0] for line in lines] == BAD_PATHS
    assert "$: 'quickLooks' is required" in lines
    assert any(line.startswith("$.unknownField: unknown field") for line in lines)
    assert "valid" not in result.stdout


def test_directory_expands_to_its_json_files(tmp_path: Path, bad_article: Path) -> None:
    write(tmp_path / "good.json", seed())
    (tmp_path / "notes.txt").write_text("not json, and not an article", encoding="utf-8")
    sub = tmp_path / "nested"
    sub.mkdir()
    write(sub / "ignored.json", {"not": "an article"})  # only the directory's own *.json files
    result = run(str(tmp_path))
    assert result.returncode == 2
    assert f"{tmp_path / 'good.json'}: valid" in result.stdout
    assert f"{bad_article}: invalid" in result.stderr
    combined = result.stdout + result.stderr
    assert "notes.txt" not in combined
    assert "ignored.json" not in combined
    assert "1 invalid file(s)" in result.stderr


def test_examples_directory_is_valid_through_the_runner() -> None:
    result = CliRunner().invoke(cli, ["validate", str(EXAMPLES_DIR)])
    assert result.exit_code == 0, result.output
    assert result.output.count(": valid") == len(EXAMPLES)


def test_malformed_json_exits_2_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"id": "a",\n "version": 1,,}', encoding="utf-8")
    result = run(str(path))
    assert result.returncode == 2
    assert f"{path}: invalid" in result.stderr
    assert any(line.startswith("$: malformed JSON") and "line 2" in line for line in problem_lines(result.stderr))


def test_invalid_utf8_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"headline": "Caf\u00e9"}'.encode("latin-1"))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert "$: not valid UTF-8" in result.output


def test_missing_file_exits_2_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    result = run(str(path))
    assert result.returncode == 2
    assert f"$: no such file: {path}" in result.stderr


def test_a_json_value_that_is_not_an_object_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path / "list.json", [seed()])
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert "  $: must be an object, not an array" in result.output


def test_every_file_is_checked_even_after_a_bad_one(tmp_path: Path, bad_article: Path) -> None:
    missing = tmp_path / "missing.json"
    result = CliRunner().invoke(cli, ["validate", str(bad_article), str(missing), str(SEED)])
    assert result.exit_code == 2
    assert f"{SEED}: valid" in result.output
    assert f"{bad_article}: invalid" in result.output
    assert f"{missing}: invalid" in result.output
    assert "2 invalid file(s)" in result.output


def test_no_files_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 2
    assert "FILES" in result.output


HOSTILE_FILES = {
    "duplicate keys": (b'{"id": "a", "id": "b"}', "appears twice"),
    "NaN": (b'{"version": NaN}', "NaN is not a JSON number"),
    "1e400": (b'{"version": 1e400}', "too large for a double"),
    "lone surrogate": (b'{"headline": "\\ud800"}', "lone UTF-16 surrogate"),
    "nesting 100000 deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    "a 5000-digit integer": (b'{"version": ' + b"9" * 5000 + b"}", "4300 digits"),
}


@pytest.mark.parametrize("name", list(HOSTILE_FILES))
def test_hostile_json_files_are_invalid_not_a_traceback(tmp_path, name):
    raw, said = HOSTILE_FILES[name]
    path = tmp_path / "hostile.json"
    path.write_bytes(raw)
    result = run(str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert said in result.stderr and "$:" in result.stderr
