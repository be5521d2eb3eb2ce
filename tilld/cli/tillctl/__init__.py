"""``tillctl``: the technician's client for a running tilld.

A thin client of the socket API: every command is one or more JSON-RPC calls
and a rendering of the answer, never a second implementation of the logic.
The modules: ``parser`` (the command line, also the source of completion and
the man page), ``client`` (the socket), ``commands`` (one function each),
``render`` (text for people), ``confirm`` (asking before what closes or resets),
``export_filter`` (which journal entries an export writes).

Exit codes: 0 success, 1 the daemon refused or reported a problem, 2 usage
(or a dangerous command not confirmed), 3 the daemon cannot be reached.
No failure leaves as a traceback: each is one line on stderr.
"""

from __future__ import annotations

import os
import sys

from . import commands
from .client import Client, RpcError, Unreachable
from .commands import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, Failed
from .confirm import NotConfirmed
from .parser import DEFAULT_SOCKET, build_parser
from .render import render_status

__all__ = ["DEFAULT_SOCKET", "Client", "RpcError", "build_parser", "main", "render_status"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        local = commands.LOCAL_COMMANDS.get(args.run)
        if local is not None:
            return local(args)
        client = Client(args.socket)
        try:
            return getattr(commands, f"cmd_{args.run}")(client, args)
        finally:
            client.close()
    except Unreachable as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    except RpcError as exc:
        return _fail(exc.one_line(), EXIT_REFUSED)
    except Failed as exc:
        return _fail(str(exc), EXIT_REFUSED)
    except NotConfirmed as exc:
        return _fail(str(exc), EXIT_USAGE)
    except BrokenPipeError:
        # Our reader went away (tillctl ... | head); socket errors are Unreachable.
        # Python's own flush at exit would complain about it again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except TimeoutError:
        return _fail(
            f"tilld at {args.socket} did not answer in time; it may be busy or stuck "
            "(journalctl -u tilld)",
            EXIT_UNREACHABLE,
        )
    except KeyboardInterrupt:
        return 130


def _fail(line: str, code: int) -> int:
    print(f"tillctl: {line}", file=sys.stderr)
    return code
