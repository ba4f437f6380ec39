"""Every command documents itself: a summary, an example and help for each parameter."""

import pytest
import typer
from typer.testing import CliRunner

from cli.main import app


def command_paths(group=None, prefix=()):
    group = group or typer.main.get_command(app)
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if hasattr(command, "commands"):
            yield path, command
            yield from command_paths(command, path)
        else:
            yield path, command


PATHS = list(command_paths())


def test_core_commands_are_registered():
    names = {" ".join(path) for path, _command in PATHS}
    expected = {
        "network", "network create", "network ls", "network rm", "network icc",
        "allocate", "release", "ls", "rebuild", "db", "db upgrade",
    }
    assert expected <= names


@pytest.mark.parametrize(("path", "command"), PATHS, ids=[" ".join(p) for p, _c in PATHS])
def test_help(path, command):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert command.help, f"`netstate {' '.join(path)}` has no help text"
    # Help text is rewrapped to the terminal width, so compare with whitespace folded.
    assert " ".join(command.help.splitlines()[0].split()) in " ".join(result.output.split())
    if not hasattr(command, "commands"):
        assert "Example: netstate " in command.help
    for param in command.params:
        assert getattr(param, "help", None), f"parameter {param.name} of {' '.join(path)} has no help"
