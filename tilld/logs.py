"""Logging to stderr with syslog priority prefixes, so journald keeps each line's level.

systemd reads a leading ``<N>`` on a stderr line as the syslog priority
(sd-daemon(3)); without it every line would be logged at the unit's default.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    NOTICE: 5,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": NOTICE,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class SyslogPrefixFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        # journald splits on newlines; keep a traceback's lines at the same level.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SyslogPrefixFormatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)


def log_also_to(path: Path) -> None:
    """Also write every log line, with its time and level, to ``path`` (the demo's log)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    logging.getLogger().addHandler(handler)


def set_level(level: str) -> None:
    """Change the level of everything logged from now on (``log.level`` reloads live)."""
    logging.getLogger().setLevel(LEVELS.get(level, logging.INFO))
