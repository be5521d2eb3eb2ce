"""Ticket codes: made from the catalog's ``ticket_code_pattern``, and recognised in scans.

The back-end only publishes a regular expression, so the till reads it
itself: Python's parsed form of the pattern is turned into a small tree of
character sets, sequences, alternatives and repeats. That tree makes codes
(randomness from ``secrets``, because a guessable ticket code is a free
admission) and recognises them.

A scanned code is never handed to a backtracking regex engine. With
``^(a|aa)+$`` Python's ``re`` took 5.2 s for a 37-character code, growing
1.6x per character, and every scan is matched on the event loop; even
``A{0,4}`` written fifteen times takes minutes for 61 characters. So the
tree becomes a position automaton (Glushkov's construction), and a code is
matched in one pass over its characters, at most code length x positions
steps whatever the pattern, after a code longer than the pattern allows has
been turned away without looking at it.

A pattern is checked once, when its catalog is loaded (``compile_pattern``),
against the subset in ``SUPPORTED_SUBSET``. Besides what the generator can
make, the subset refuses the shapes that make other systems' backtracking
matchers (gates, back-ends) explode, such as a repeated group whose content
can match different lengths, and codes longer than MAX_TICKET_CODE_LENGTH.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parser  # type: ignore[attr-defined]
from typing import Any

# Enough characters for collisions to be negligible in a venue's lifetime,
# but no longer than the pattern allows.
PREFERRED_REPEAT = 12
_ANY_CHARS = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"

MAX_TICKET_CODE_LENGTH = 64  # the default pattern's codes have at most 34 characters
MAX_PATTERN_LENGTH = 200
# A position is one character of the pattern (a literal, a class, '.') once
# bounded repeats are written out: the default pattern has 34. Matching costs
# at most code length x positions steps.
MAX_POSITIONS = 256
MASKS_REMEMBERED = 4096

SUPPORTED_SUBSET = (
    "Supported: literal characters; classes like [0-9A-Z] of characters, ranges and \\d "
    "(0-9); '.'; groups (...) and (?:...) with |; repeats ?, *, +, {n}, {m,n} of a "
    "character, a class or a group that always matches the same number of characters; "
    "^ or \\A at the start and $ or \\Z at the end; no control characters; codes of 1 to "
    f"{MAX_TICKET_CODE_LENGTH} characters; at most {MAX_PATTERN_LENGTH} characters of pattern"
)

# C0 and C1 controls, DEL, the line and paragraph separators.
_CONTROL_RANGES = ((0x00, 0x1F), (0x7F, 0x9F), (0x2028, 0x2029))
_START_ANCHORS = (sre_constants.AT_BEGINNING, sre_constants.AT_BEGINNING_STRING)
_END_ANCHORS = (sre_constants.AT_END, sre_constants.AT_END_STRING)


class UnsupportedPattern(ValueError):
    pass


# -- the pattern as a tree ---------------------------------------------------------


@dataclass(frozen=True)
class Chars:
    """One character of a code: from inclusive code point ranges, or any but a newline ('.')."""

    ranges: tuple[tuple[int, int], ...]
    any_but_newline: bool = False

    def matches(self, ch: str) -> bool:
        if self.any_but_newline:
            return ch != "\n"
        point = ord(ch)
        return any(low <= point <= high for low, high in self.ranges)

    def choose(self) -> str:
        if self.any_but_newline:
            return secrets.choice(_ANY_CHARS)
        pick = secrets.randbelow(sum(high - low + 1 for low, high in self.ranges))
        for low, high in self.ranges:
            if pick <= high - low:
                return chr(low + pick)
            pick -= high - low + 1
        raise AssertionError("unreachable: pick is below the ranges' size")


@dataclass(frozen=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    branches: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    item: Node
    low: int
    high: int | None  # None: no upper bound (* and +)


Node = Chars | Seq | Alt | Repeat


def shortest(node: Node) -> int:
    if isinstance(node, Chars):
        return 1
    if isinstance(node, Seq):
        return sum(shortest(item) for item in node.items)
    if isinstance(node, Alt):
        return min(shortest(branch) for branch in node.branches)
    return node.low * shortest(node.item)


def longest(node: Node) -> int | None:
    """The most characters a code matching ``node`` can have; None: no limit."""
    if isinstance(node, Chars):
        return 1
    if isinstance(node, Seq):
        lengths = [longest(item) for item in node.items]
        return None if None in lengths else sum(n for n in lengths if n is not None)
    if isinstance(node, Alt):
        lengths = [longest(branch) for branch in node.branches]
        return None if None in lengths else max(n for n in lengths if n is not None)
    item = longest(node.item)
    if node.high is None:
        return 0 if item == 0 else None
    return None if item is None else node.high * item


def _made_count(repeat: Repeat) -> int:
    high = PREFERRED_REPEAT if repeat.high is None else repeat.high
    return max(repeat.low, min(high, PREFERRED_REPEAT))


def made_length(node: Node) -> int:
    """The most characters a code made from ``node`` can have."""
    if isinstance(node, Chars):
        return 1
    if isinstance(node, Seq):
        return sum(made_length(item) for item in node.items)
    if isinstance(node, Alt):
        return max(made_length(branch) for branch in node.branches)
    return _made_count(node) * made_length(node.item)


def _make(node: Node, out: list[str]) -> None:
    if isinstance(node, Chars):
        out.append(node.choose())
    elif isinstance(node, Seq):
        for item in node.items:
            _make(item, out)
    elif isinstance(node, Alt):
        _make(secrets.choice(node.branches), out)
    else:
        for _ in range(_made_count(node)):
            _make(node.item, out)


# -- reading Python's parse of the pattern -------------------------------------------


def _tree(items: Any) -> Node:
    nodes: list[Node] = []
    for op, arg in items:
        if op is sre_constants.LITERAL:
            nodes.append(_printable(Chars(((arg, arg),))))
        elif op is sre_constants.IN:
            nodes.append(_class(arg))
        elif op is sre_constants.ANY:
            nodes.append(Chars((), any_but_newline=True))
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            low, high, sub = arg
            item = _tree(sub)
            if not isinstance(item, Chars) and shortest(item) != longest(item):
                raise UnsupportedPattern(
                    "a repeat (?, *, +, {m,n}) applies to a group that can match different "
                    "numbers of characters, as in (a|aa)+ or (a+)+; backtracking matchers "
                    "take exponential time on such patterns"
                )
            if shortest(item) == 0:
                raise UnsupportedPattern("a repeat applies to a group that matches nothing")
            nodes.append(Repeat(item, low, None if high is sre_constants.MAXREPEAT else high))
        elif op is sre_constants.SUBPATTERN:
            _group, add_flags, del_flags, sub = arg
            if add_flags or del_flags:
                raise UnsupportedPattern("inline flags like (?i:...) are not supported")
            nodes.append(_tree(sub))
        elif op is sre_constants.BRANCH:
            nodes.append(Alt(tuple(_tree(branch) for branch in arg[1])))
        elif op is sre_constants.AT:
            raise UnsupportedPattern(
                f"the anchor {arg} is not supported there: only ^ or \\A at the start and "
                "$ or \\Z at the end"
            )
        else:
            raise UnsupportedPattern(f"ticket code patterns cannot use {op}")
    return nodes[0] if len(nodes) == 1 else Seq(tuple(nodes))


def _class(spec: Any) -> Chars:
    ranges: list[tuple[int, int]] = []
    for op, arg in spec:
        if op is sre_constants.LITERAL:
            ranges.append((arg, arg))
        elif op is sre_constants.RANGE:
            ranges.append((arg[0], arg[1]))
        elif op is sre_constants.CATEGORY and arg is sre_constants.CATEGORY_DIGIT:
            ranges.append((ord("0"), ord("9")))  # \d is 0-9 here, as in most regex dialects
        else:
            raise UnsupportedPattern(f"ticket code character classes cannot use {op}")
    if not ranges:
        raise UnsupportedPattern("empty character class in ticket code pattern")
    return _printable(Chars(tuple(ranges)))


def _printable(chars: Chars) -> Chars:
    # Codes made from the pattern are printed on receipts, where a control
    # character is a printer command (ESC p opens the cash drawer).
    for low, high in chars.ranges:
        for first, last in _CONTROL_RANGES:
            if low <= last and first <= high:
                raise UnsupportedPattern(
                    f"codes made from it could hold the control character "
                    f"U+{max(low, first):04X}, which a receipt printer takes for a command"
                )
    return chars


def _strip_anchors(items: list[Any]) -> list[Any]:
    if items and items[0][0] is sre_constants.AT and items[0][1] in _START_ANCHORS:
        items = items[1:]
    if items and items[-1][0] is sre_constants.AT and items[-1][1] in _END_ANCHORS:
        items = items[:-1]
    return items


# -- the position automaton --------------------------------------------------------

# A piece of the automaton: (matches the empty string, first positions, last positions).
Piece = tuple[bool, frozenset[int], frozenset[int]]
EMPTY: Piece = (True, frozenset(), frozenset())


class _Positions:
    """Glushkov's construction: one position per character of the pattern, and what may follow it.

    A bounded repeat is written out (a{2,4} is a a (a (a)?)?), cut at what a
    code of MAX_TICKET_CODE_LENGTH characters can use; * and + loop.
    """

    def __init__(self) -> None:
        self.chars: list[Chars] = []
        self.follow: list[set[int]] = []

    def build(self, node: Node) -> Piece:
        if isinstance(node, Chars):
            if len(self.chars) >= MAX_POSITIONS:
                raise UnsupportedPattern(
                    f"it is too large to match safely (more than {MAX_POSITIONS} character "
                    "positions once its repeats are written out)"
                )
            self.chars.append(node)
            self.follow.append(set())
            here = frozenset((len(self.chars) - 1,))
            return (False, here, here)
        if isinstance(node, Seq):
            piece = EMPTY
            for item in node.items:
                piece = self._then(piece, self.build(item))
            return piece
        if isinstance(node, Alt):
            pieces = [self.build(branch) for branch in node.branches]
            return (
                any(p[0] for p in pieces),
                frozenset().union(*(p[1] for p in pieces)),
                frozenset().union(*(p[2] for p in pieces)),
            )
        return self._repeat(node)

    def _repeat(self, node: Repeat) -> Piece:
        piece = EMPTY
        for _ in range(node.low):
            piece = self._then(piece, self.build(node.item))
        if node.high is None:
            _, first, last = self.build(node.item)
            for p in last:
                self.follow[p] |= first
            return self._then(piece, (True, first, last))
        fits = MAX_TICKET_CODE_LENGTH // shortest(node.item)
        copies = [self.build(node.item) for _ in range(max(0, min(node.high, fits) - node.low))]
        # (X (X (X)?)?)?: each optional copy may only follow the one before it.
        first: frozenset[int] = frozenset()
        last: frozenset[int] = frozenset()
        for _, copy_first, copy_last in reversed(copies):
            for p in copy_last:
                self.follow[p] |= first
            first, last = copy_first, copy_last | last
        return self._then(piece, (True, first, last))

    def _then(self, before: Piece, after: Piece) -> Piece:
        for p in before[2]:
            self.follow[p] |= after[1]
        return (
            before[0] and after[0],
            before[1] | after[1] if before[0] else before[1],
            after[2] | before[2] if after[0] else after[2],
        )


@dataclass(frozen=True)
class TicketCodePattern:
    """A checked ticket_code_pattern: makes codes and tells, in one pass, whether a code is one.

    Sets of positions are bit masks; what a character matches and what may
    follow a set of positions are remembered (a few thousand of each), so a
    scan of an ordinary code costs a few dictionary look-ups per character.
    """

    pattern: str
    shortest: int
    longest: int  # at most MAX_TICKET_CODE_LENGTH
    tree: Node
    chars: tuple[Chars, ...]
    first: int
    follow: tuple[int, ...]
    last: int
    _char_masks: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    _follow_masks: dict[int, int] = field(default_factory=dict, compare=False, repr=False)

    def fullmatch(self, code: str) -> bool:
        # A code of the wrong length is no ticket, whatever it holds.
        if not self.shortest <= len(code) <= self.longest:
            return False
        candidates, reached = self.first, 0
        for ch in code:
            reached = candidates & self._matching(ch)
            if not reached:
                return False
            candidates = self._following(reached)
        return bool(reached & self.last)

    def _matching(self, ch: str) -> int:
        mask = self._char_masks.get(ch)
        if mask is None:
            mask = sum(1 << p for p, chars in enumerate(self.chars) if chars.matches(ch))
            if len(self._char_masks) >= MASKS_REMEMBERED:
                self._char_masks.clear()
            self._char_masks[ch] = mask
        return mask

    def _following(self, reached: int) -> int:
        mask = self._follow_masks.get(reached)
        if mask is None:
            mask, rest = 0, reached
            while rest:
                lowest = rest & -rest
                mask |= self.follow[lowest.bit_length() - 1]
                rest ^= lowest
            if len(self._follow_masks) >= MASKS_REMEMBERED:
                self._follow_masks.clear()
            self._follow_masks[reached] = mask
        return mask

    def make_code(self) -> str:
        """A fresh random code that fully matches the pattern."""
        out: list[str] = []
        _make(self.tree, out)
        code = "".join(out)
        if not self.fullmatch(code):
            raise UnsupportedPattern(_refusal(self.pattern, "a code made from it does not match"))
        return code


def _mask(positions: Iterable[int]) -> int:
    return sum(1 << p for p in positions)


def _refusal(pattern: str, why: str) -> str:
    shown = pattern if len(pattern) <= 80 else pattern[:60] + "..."
    return (
        f"cannot use the ticket_code_pattern {shown!r}: {why}. {SUPPORTED_SUBSET}. "
        "Ask the back-end administrator for a ticket_code_pattern in this subset"
    )


def compile_pattern(pattern: str) -> TicketCodePattern:
    """Check ``pattern`` against the supported subset and build its matcher.

    Raises UnsupportedPattern naming the pattern, why, and the subset."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise UnsupportedPattern(
            _refusal(pattern, f"it is longer than {MAX_PATTERN_LENGTH} characters")
        )
    try:
        parsed = sre_parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise UnsupportedPattern(_refusal(pattern, f"not a regular expression ({exc})")) from None
    try:
        if parsed.state.flags & ~re.UNICODE.value:
            raise UnsupportedPattern("inline flags like (?i) are not supported")
        tree = _tree(_strip_anchors(list(parsed)))
        low, high, made = shortest(tree), longest(tree), made_length(tree)
        if low == 0:
            raise UnsupportedPattern("it matches an empty code")
        if low > MAX_TICKET_CODE_LENGTH:
            raise UnsupportedPattern(
                f"its shortest code has {low} characters; ticket codes have at most "
                f"{MAX_TICKET_CODE_LENGTH}"
            )
        if made > MAX_TICKET_CODE_LENGTH:
            raise UnsupportedPattern(
                f"codes made from it would have up to {made} characters; ticket codes have "
                f"at most {MAX_TICKET_CODE_LENGTH}"
            )
        positions = _Positions()
        _, first, last = positions.build(tree)
    except UnsupportedPattern as exc:
        raise UnsupportedPattern(_refusal(pattern, str(exc))) from None
    return TicketCodePattern(
        pattern=pattern,
        shortest=low,
        longest=MAX_TICKET_CODE_LENGTH if high is None else min(high, MAX_TICKET_CODE_LENGTH),
        tree=tree,
        chars=tuple(positions.chars),
        first=_mask(first),
        follow=tuple(_mask(f) for f in positions.follow),
        last=_mask(last),
    )


def make_ticket_code(pattern: str) -> str:
    """A fresh code that fully matches ``pattern``, compiled for this one call (tests, tools)."""
    return compile_pattern(pattern).make_code()
