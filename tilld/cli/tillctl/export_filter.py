"""Which journal entries `tillctl journal export` writes: some types, or one receipt's.

The daemon pages the whole journal; the filter is applied to each page's
JSON lines or CSV rows as they arrive, so the output keeps the daemon's format.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from ...export_columns import EXPORT_FIELDS


class ExportFilter:
    """Only the entries of some types, or of one receipt (sale, refund of it, its prints)."""

    def __init__(self, types: list[str], receipt_no: int | None) -> None:
        self.types = set(types)
        self.receipt_no = receipt_no

    def keeps(self, entry_type: str, body: dict[str, Any]) -> bool:
        if self.types and entry_type not in self.types:
            return False
        if self.receipt_no is None:
            return True
        return self.receipt_no in (body.get("receipt_no"), body.get("original_receipt_no"))

    def apply(self, content: str, fmt: str, first: bool) -> str:
        if not self.types and self.receipt_no is None:
            return content
        if fmt == "jsonl":
            kept = [line for line in content.splitlines(keepends=True) if self._keeps_json(line)]
            return "".join(kept)
        rows = list(csv.reader(io.StringIO(content)))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        header = rows[0] if first and rows else None
        for index, row in enumerate(rows):
            if index == 0 and header is not None:
                writer.writerow(row)
                continue
            fields = dict(zip(header or EXPORT_FIELDS, row, strict=False))
            if self.keeps(fields.get("type", ""), _json_or_empty(fields.get("body", ""))):
                writer.writerow(row)
        return out.getvalue()

    def _keeps_json(self, line: str) -> bool:
        entry = _json_or_empty(line)
        return self.keeps(entry.get("type", ""), entry.get("body") or {})


def _json_or_empty(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
