"""The man pages and shell completions are generated from the parsers and kept current."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest
from conftest import REPO

from tilld.cli.argtree import read_tree
from tilld.cli.completion import bash_completion, zsh_completion
from tilld.cli.manpage import SECTIONS, manpage, parsers
from tilld.cli.tillctl.parser import build_parser


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_the_man_page_is_what_make_man_writes(name):
    page = REPO / "man" / f"{name}.{SECTIONS[name]}"
    assert page.read_text(encoding="utf-8") == manpage(parsers()[name], SECTIONS[name]), (
        f"{page} is stale: run make man"
    )


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_the_completions_are_what_make_man_writes(name):
    parser = parsers()[name]
    assert (REPO / "completions" / f"{name}.bash").read_text() == bash_completion(parser)
    assert (REPO / "completions" / f"_{name}").read_text() == zsh_completion(parser)


def test_the_tillctl_man_page_names_every_subcommand():
    page = (REPO / "man" / "tillctl.1").read_text(encoding="utf-8")
    commands = [" ".join(c.path[1:]) for c in read_tree(build_parser()).walk()[1:]]
    assert "receipt show" in commands and "terminal flush" in commands
    missing = [c for c in commands if f".B {c.replace('-', chr(92) + '-')}\n" not in page]
    assert not missing, missing


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_renders_the_pages_without_warnings():
    for name, section in SECTIONS.items():
        shown = subprocess.run(
            ["man", "--warnings", "-l", str(REPO / "man" / f"{name}.{section}")],
            capture_output=True,
            text=True,
            timeout=60,
            env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin", "MAN_KEEP_FORMATTING": "0"},
        )
        assert shown.returncode == 0, shown.stderr
        assert "warning" not in shown.stderr, shown.stderr
        assert name.upper() in shown.stdout


def complete(*words: str) -> list[str]:
    """What bash offers after `tillctl WORDS...` (the last word is being typed)."""
    quoted = " ".join(shlex.quote(w) for w in words)
    script = (
        f"source {shlex.quote(str(REPO / 'completions' / 'tillctl.bash'))}\n"
        f"COMP_WORDS=(tillctl {quoted})\n"
        f"COMP_CWORD={len(words)}\n"
        "_tillctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_subcommands_their_options_and_choices():
    assert complete("re") == ["report", "receipt"]
    assert complete("receipt", "") == [
        "show",
        "print",
        "-h",
        "--help",
        "--socket",
        "--json",
        "-y",
        "--yes",
    ]
    assert complete("--json", "journal", "export", "--format", "") == ["jsonl", "csv"]
    assert "terminal" in complete("watch", "")


def test_bash_completes_tilld_too():
    script = (
        f"source {shlex.quote(str(REPO / 'completions' / 'tilld.bash'))}\n"
        "COMP_WORDS=(tilld sim ''); COMP_CWORD=2; _tilld\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert {"backend", "printer", "scanner"} <= set(done.stdout.split()), done


def zsh_offers(*words: str) -> list[str]:
    """The names zsh's completion offers after `tillctl WORDS...`, with its UI stubbed out."""
    script = (
        '_describe() { local arr=$4; print -l -- "${(@P)arr}"; }\n'
        'compadd() { shift; print -l -- "$@"; }\n'
        f"words=(tillctl {' '.join(shlex.quote(w) for w in words)})\n"
        f"CURRENT={len(words) + 1}\n"
        f"source {shlex.quote(str(REPO / 'completions' / '_tillctl'))}\n"
    )
    done = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line.split(":", 1)[0] for line in done.stdout.splitlines()]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completes_subcommands_and_choices():
    assert {"show", "print", "--socket"} <= set(zsh_offers("receipt", ""))
    assert zsh_offers("journal", "export", "--format", "") == ["jsonl", "csv"]
    assert "terminal" in zsh_offers("watch", "")
