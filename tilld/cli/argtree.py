"""The argparse tree read as data, for the shell completions and man pages built from it.

argparse keeps its structure in private attributes (``_actions``,
``_SubParsersAction``); reading them here, in one place, keeps the
generators free of them and lets one test catch a Python that changes them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field


@dataclass
class Option:
    flags: list[str]
    help: str
    metavar: str | None  # None: a flag that takes no value
    choices: list[str]


@dataclass
class Command:
    path: list[str]  # ["tillctl", "journal", "export"]
    help: str
    description: str
    usage: str
    options: list[Option] = field(default_factory=list)
    positionals: list[Option] = field(default_factory=list)
    subcommands: list[Command] = field(default_factory=list)

    def walk(self) -> list[Command]:
        found = [self]
        for sub in self.subcommands:
            found += sub.walk()
        return found


def read_tree(
    parser: argparse.ArgumentParser, path: list[str] | None = None, help: str = ""
) -> Command:
    path = path or [parser.prog]
    command = Command(
        path=path,
        help=help or parser.description or "",
        description=parser.description or help,
        usage=" ".join(parser.format_usage().removeprefix("usage: ").split()),
    )
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                command.subcommands.append(read_tree(sub, [*path, name], helps.get(name, "")))
            continue
        choices = [str(c) for c in (action.choices or []) if isinstance(c, str)]
        takes_value = action.nargs != 0
        metavar = action.metavar or (action.dest.upper() if takes_value else None)
        if isinstance(metavar, tuple):
            metavar = " ".join(metavar)
        option = Option(list(action.option_strings), action.help or "", metavar, choices)
        if action.option_strings:
            command.options.append(option)
        else:
            option.flags = [action.dest]
            command.positionals.append(option)
    return command
