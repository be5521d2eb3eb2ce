"""``make api-docs``: write docs/api.md's refusal reason table from ``tilld.errors.Reason``.

Only the text between the two marker comments is replaced; the rest of the
file is written by hand. tests/test_docs.py fails when the file differs from
what this would write.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import Reason

BEGIN = "<!-- refusal reasons: written by `make api-docs` from tilld/errors.py; edit them there -->"
END = "<!-- end of refusal reasons -->"


def reason_table() -> str:
    rows = [f"| `{reason.value}` | {reason.when} |" for reason in Reason]
    return "\n".join(["| reason | when |", "|---|---|", *rows])


def with_reason_table(doc: str) -> str:
    """``doc`` with the text between the markers replaced by the registry's table."""
    head, begin, rest = doc.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the reason table's markers are missing: {BEGIN!r} ... {END!r}")
    return f"{head}{BEGIN}\n{reason_table()}\n{END}{tail}"


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/api.md")
    doc = path.read_text(encoding="utf-8")
    new = with_reason_table(doc)
    if new != doc:
        path.write_text(new, encoding="utf-8")
        print(f"wrote {path}")
    else:
        print(f"{path} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
