"""Man pages (roff, man(7) macros) generated from the argparse trees of tilld and tillctl.

``python -m tilld.cli.manpage DIR`` writes tilld.8 and tillctl.1 into DIR;
`make man` runs it at build time and `make install` installs the pages, so
the manual can never say something the parser does not do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import __version__
from .argtree import Command, read_tree

SECTIONS = {"tilld": "8", "tillctl": "1"}
EXTRA = {
    "tilld": (
        ("FILES", "/etc/tilld/tilld.toml (configuration), /var/lib/tilld (the journal), "
         "/run/tilld/tilld.sock (the API socket)."),
        ("EXIT STATUS", "sysexits(3): 0 stopped cleanly, 78 (EX_CONFIG) a bad configuration, "
         "73 (EX_CANTCREAT) cannot start, 70 (EX_SOFTWARE) stopped without closing the journal."),
        ("SEE ALSO", "tillctl(1), systemctl(1), journalctl(1)"),
    ),
    "tillctl": (
        ("ENVIRONMENT", "TILLD_SOCKET: the socket when --socket is not given. "
         "NO_COLOR: plain output on a terminal too."),
        ("EXIT STATUS", "0 done; 1 tilld refused or something failed (one line on stderr); "
         "2 a usage error, or something that closes or resets was not confirmed; "
         "3 tilld cannot be reached."),
        ("SEE ALSO", "tilld(8), journalctl(1)"),
    ),
}  # fmt: skip


def roff(text: str) -> str:
    """Escape text for roff: backslashes, and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def manpage(parser: argparse.ArgumentParser, section: str, date: str = "") -> str:
    root = read_tree(parser)
    name = root.path[0]
    out = [
        f'.TH {name.upper()} {section} "{date}" "tilld {__version__}" "tilld"',
        ".SH NAME",
        f"{name} \\- {roff(root.description)}",
        ".SH SYNOPSIS",
        f".B {name}",
        roff(root.usage.removeprefix(name).strip()),
        ".SH OPTIONS",
    ]
    out += _options(root)
    commands = root.walk()[1:]
    if commands:
        out.append(".SH COMMANDS")
        for command in commands:
            out += [".TP", f".B {roff(' '.join(command.path[1:]))}", roff(command.help)]
            if command.usage:
                out += [".br", f"Usage: {roff(command.usage)}"]
            for positional in command.positionals:
                if positional.choices:
                    out += [".br", roff(f"{positional.flags[0]}: {', '.join(positional.choices)}")]
            for option in command.options:
                if option.flags[0] in {o.flags[0] for o in root.options} or option.flags == [
                    "-h",
                    "--help",
                ]:
                    continue
                value = f" {option.metavar}" if option.metavar else ""
                out += [".br", roff(f"{', '.join(option.flags)}{value}: {option.help}")]
    for title, text in EXTRA.get(name, ()):
        out += [f".SH {title}", roff(text)]
    return "\n".join(out) + "\n"


def _options(command: Command) -> list[str]:
    lines = []
    for option in command.options:
        value = f" \\fI{roff(option.metavar)}\\fR" if option.metavar else ""
        flags = ", ".join(f"\\fB{roff(f)}\\fR" for f in option.flags)
        lines += [".TP", flags + value, roff(option.help)]
    return lines


def parsers() -> dict[str, argparse.ArgumentParser]:
    from .daemon import build_parser as tilld_parser
    from .tillctl.parser import build_parser as tillctl_parser

    return {"tilld": tilld_parser(), "tillctl": tillctl_parser()}


def write_pages(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, parser in parsers().items():
        path = folder / f"{name}.{SECTIONS[name]}"
        path.write_text(manpage(parser, SECTIONS[name]), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m tilld.cli.manpage DIR", file=sys.stderr)
        return 2
    for path in write_pages(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
