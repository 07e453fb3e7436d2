"""The ``kanaria`` command: help lists every subcommand, and a subcommand whose
extra is not installed fails with an install hint instead of a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kanaria import cli


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kanaria", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in cli.COMMANDS:
        assert name in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_missing_module_names_the_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(cli.COMMANDS, "ghost", cli.Command("kanaria_ghost_module", "x", "ghost"))
    assert cli.main(["ghost"]) == 2
    assert "kanaria[ghost]" in capsys.readouterr().err


def test_help_texts_show_percent_signs_once() -> None:
    """argparse %-formats a subcommand's one-line help but prints its description as is,
    so `kanaria abort --help` must not show the escaped `%%`."""
    for args in (("abort", "--help"), ("--help",)):
        result = subprocess.run(
            [sys.executable, "-m", "kanaria", *args], capture_output=True, text=True, check=True
        )
        assert "100% back to stable" in result.stdout, result.stdout
        assert "%%" not in result.stdout, result.stdout
