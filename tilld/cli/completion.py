"""Shell completion for bash and zsh, generated from the same argparse tree as --help.

``tillctl completion bash`` prints tillctl's script and ``python -m
tilld.cli.completion tilld|tillctl bash|zsh`` either command's; `make man`
keeps them in completions/ and `make install` puts them where
bash-completion and zsh look. Completion offers the subcommands at each
level, the options of the command typed so far, and an option's or a
positional's fixed choices.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from .argtree import Command, read_tree


def _words(command: Command) -> list[str]:
    words = [sub.path[-1] for sub in command.subcommands]
    for option in command.options:
        words += option.flags
    for positional in command.positionals:
        words += positional.choices
    return words


def _value_choices(command: Command) -> dict[str, list[str]]:
    return {flag: o.choices for o in command.options if o.choices for flag in o.flags}


def bash_completion(parser: argparse.ArgumentParser) -> str:
    root = read_tree(parser)
    name = root.path[0]
    func = f"_{name.replace('-', '_')}"
    cases = []
    for command in root.walk():
        key = " ".join(command.path[1:])
        lines = [f"        {shlex.quote(key)})"]
        for flag, choices in _value_choices(command).items():
            lines.append(
                f'            if [ "$prev" = {shlex.quote(flag)} ]; then '
                f'COMPREPLY=($(compgen -W {shlex.quote(" ".join(choices))} -- "$cur")); return; fi'
            )
        lines.append(f"            words={shlex.quote(' '.join(_words(command)))} ;;")
        cases.append("\n".join(lines))
    subcommand_names = sorted({c.path[-1] for c in root.walk()[1:]})
    return f"""# bash completion for {name}, generated from its argument parser
{func}() {{
    local cur prev path="" w words i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    # The subcommands typed so far make the path; options and their values are skipped.
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${{COMP_WORDS[i]}}"
        case " {" ".join(subcommand_names)} " in
            *" $w "*) path="${{path:+$path }}$w" ;;
        esac
    done
    case "$path" in
{chr(10).join(cases)}
        *) words="" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F {func} {name}
"""


def zsh_completion(parser: argparse.ArgumentParser) -> str:
    root = read_tree(parser)
    name = root.path[0]
    func = f"_{name.replace('-', '_')}"
    cases = []
    for command in root.walk():
        key = " ".join(command.path[1:])
        described = [f"{sub.path[-1]}:{_zsh_text(sub.help)}" for sub in command.subcommands]
        described += [f"{flag}:{_zsh_text(o.help)}" for o in command.options for flag in o.flags]
        described += [f"{c}:{p.flags[0]}" for p in command.positionals for c in p.choices]
        values = _value_choices(command)
        value_lines = "".join(
            f"            if [[ $prev == {shlex.quote(flag)} ]]; then "
            f"compadd -- {' '.join(shlex.quote(c) for c in choices)}; return; fi\n"
            for flag, choices in values.items()
        )
        entries = " ".join(shlex.quote(d) for d in described)
        cases.append(f"        {shlex.quote(key)})\n{value_lines}            items=({entries}) ;;")
    subcommand_names = sorted({c.path[-1] for c in root.walk()[1:]})
    return f"""#compdef {name}
# zsh completion for {name}, generated from its argument parser
{func}() {{
    local path="" prev="${{words[CURRENT-1]}}" w i
    local -a items
    for ((i = 2; i < CURRENT; i++)); do
        w="${{words[i]}}"
        case " {" ".join(subcommand_names)} " in
            *" $w "*) path="${{path:+$path }}$w" ;;
        esac
    done
    case "$path" in
{chr(10).join(cases)}
        *) items=() ;;
    esac
    _describe -t commands {shlex.quote(name)} items
}}
{func} "$@"
"""


def _zsh_text(text: str) -> str:
    return " ".join(text.replace(":", "\\:").split())


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2 or args[0] not in ("tilld", "tillctl") or args[1] not in ("bash", "zsh"):
        print("usage: python -m tilld.cli.completion tilld|tillctl bash|zsh", file=sys.stderr)
        return 2
    from .manpage import parsers

    parser = parsers()[args[0]]
    print(bash_completion(parser) if args[1] == "bash" else zsh_completion(parser), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
