"""Ticket codes made by the till, matching the catalog's ``ticket_code_pattern``.

The back-end only publishes a regular expression, so codes are generated from
the pattern itself: a small walk over Python's parsed form of the regex that
supports what ticket patterns use (literals, classes, ranges, repeats,
groups, alternation). Randomness comes from ``secrets`` because a guessable
ticket code is a free admission.
"""

from __future__ import annotations

import re
import secrets
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parser  # type: ignore[attr-defined]

# Enough characters for collisions to be negligible in a venue's lifetime,
# but no longer than the pattern allows.
PREFERRED_REPEAT = 12
_ANY_CHARS = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


class UnsupportedPattern(ValueError):
    pass


def make_ticket_code(pattern: str) -> str:
    """A fresh random code that fully matches ``pattern``."""
    try:
        code = "".join(_generate(sre_parser.parse(pattern)))
    except UnsupportedPattern as exc:
        raise UnsupportedPattern(
            f"cannot make ticket codes for the pattern {pattern!r} ({exc}); "
            "ask the back-end administrator for a simpler ticket_code_pattern"
        ) from None
    if not re.fullmatch(pattern, code):
        raise UnsupportedPattern(
            f"cannot make ticket codes for the pattern {pattern!r}; "
            "ask the back-end administrator for a simpler ticket_code_pattern"
        )
    return code


def _generate(items) -> list[str]:
    out: list[str] = []
    for op, arg in items:
        if op is sre_constants.LITERAL:
            out.append(chr(arg))
        elif op is sre_constants.IN:
            out.append(secrets.choice(_class_members(arg)))
        elif op is sre_constants.ANY:
            out.append(secrets.choice(_ANY_CHARS))
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, sub = arg
            count = max(low, min(high, PREFERRED_REPEAT))
            for _ in range(count):
                out.extend(_generate(sub))
        elif op is sre_constants.SUBPATTERN:
            out.extend(_generate(arg[-1]))
        elif op is sre_constants.BRANCH:
            out.extend(_generate(secrets.choice(arg[1])))
        elif op is sre_constants.AT:
            continue  # anchors add no characters
        else:
            raise UnsupportedPattern(f"ticket code patterns cannot use {op}")
    return out


def _class_members(spec) -> list[str]:
    members: list[str] = []
    for op, arg in spec:
        if op is sre_constants.LITERAL:
            members.append(chr(arg))
        elif op is sre_constants.RANGE:
            members.extend(chr(c) for c in range(arg[0], arg[1] + 1))
        elif op is sre_constants.CATEGORY and arg is sre_constants.CATEGORY_DIGIT:
            members.extend("0123456789")
        else:
            raise UnsupportedPattern(f"ticket code character classes cannot use {op}")
    if not members:
        raise UnsupportedPattern("empty character class in ticket code pattern")
    return members
