"""Every command and option of the real ``syndicate`` command tree says what it does in --help."""

from __future__ import annotations

import click
from click.testing import CliRunner

from syndicate.cli.main import cli


def _walk(command: click.Command, path: tuple[str, ...]):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(cli, ("syndicate",)))


def test_the_tree_is_the_real_one():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"syndicate run", "syndicate worker", "syndicate partners add", "syndicate dead-letters requeue",
            "syndicate subscribers list"} <= names
    assert len(names) > 30


def test_every_command_and_option_has_help():
    missing = []
    for path, command in COMMANDS:
        if not (command.help or command.short_help or "").strip():
            missing.append(" ".join(path))
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                missing.append(f"{' '.join(path)} {'/'.join(param.opts)}")
    assert not missing, "no help text: " + ", ".join(missing)


def test_every_command_prints_its_help_without_touching_a_store():
    runner = CliRunner()
    for path, command in COMMANDS:
        result = runner.invoke(cli, [*path[1:], "--help"], prog_name="syndicate")
        assert result.exit_code == 0, (path, result.output)
        summary = command.get_short_help_str(limit=200)
        assert summary and summary in " ".join(result.output.split()), (path, result.output)
