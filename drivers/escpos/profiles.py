"""python-escpos's printer profiles, parsed once and kept in a folder tilld owns.

On import python-escpos parses its capabilities.json with a pure-Python YAML
parser (about a second of a busy till's CPU, half a second alone) and caches
the result as a pickle in $ESCPOS_CAPABILITIES_PICKLE_DIR, which defaults to
a new temporary folder on every import: every start parsed it again and left
one more folder behind. The file is JSON, so ``cache`` parses it with json (a
millisecond) and writes the pickle once, atomically and synced, and
``import_escpos_printer`` names that folder to python-escpos only for the
moment of its import: the variable is process-wide, and a child process that
inherited it would trust a folder that may be gone by then.

The folder must be one only tilld writes: a pickle is code.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import os
import pickle
import platform
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

log = logging.getLogger("tilld.drivers.escpos")

PICKLE_DIR_ENV = "ESCPOS_CAPABILITIES_PICKLE_DIR"
PROFILES_FILE_ENV = "ESCPOS_CAPABILITIES_FILE"

_folder: Path | None = None
_lock = threading.Lock()


def cache(folder: Path) -> None:
    """Have the parsed profiles in ``folder`` for the first import; a failure only logs.

    Without the cache python-escpos parses the profiles itself, as before:
    slower, never wrong. Profiles named by $ESCPOS_CAPABILITIES_FILE are left
    to python-escpos, which reads that file.
    """
    global _folder
    if PROFILES_FILE_ENV in os.environ or "escpos.capabilities" in sys.modules:
        return
    try:
        _write_once(folder)
    except (OSError, ValueError) as exc:
        log.warning("python-escpos's printer profiles not cached in %s: %s", folder, exc)
        return
    _folder = folder


def _write_once(folder: Path) -> None:
    spec = importlib.util.find_spec("escpos")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("python-escpos is not installed")
    source = Path(spec.submodule_search_locations[0]) / "capabilities.json"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = _pickle(folder)
    with contextlib.suppress(OSError):
        current = target.stat()
        if current.st_size > 0 and current.st_mtime >= source.stat().st_mtime:
            return
    profiles = json.loads(source.read_text(encoding="utf-8"))
    partial = target.with_suffix(".partial")
    try:
        with open(partial, "wb") as out:
            pickle.dump(profiles, out, protocol=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def import_escpos_printer() -> ModuleType:
    """``escpos.printer``, imported with the cached profiles if ``cache`` made them."""
    with _lock:
        if (
            "escpos.capabilities" in sys.modules
            or _folder is None
            or not _pickle(_folder).is_file()
        ):
            # Without the cache (or with a folder removed since, as a test's
            # state folder is) python-escpos parses the profiles itself.
            return importlib.import_module("escpos.printer")
        with _environment(PICKLE_DIR_ENV, str(_folder)):
            return importlib.import_module("escpos.printer")


def _pickle(folder: Path) -> Path:
    # The name python-escpos looks for in the folder.
    return folder / f"{platform.python_version()}.capabilities.pickle"


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before
