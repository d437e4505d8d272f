"""Crash-safe journal of finished requests (JSON Lines), for resumable runs.

The first line is a header ``{"fingerprint": {...}}``; every further line is one
finished request (see :mod:`llamaeval.runner._records`). Each line is written and
flushed as soon as its request finishes, so a crash or Ctrl-C loses at most the
requests in flight; a torn last line is ignored on reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

from llamaeval._errors import ConfigurationError

JOURNAL_NAME = "journal.jsonl"


def read_journal(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(fingerprint, records) of a journal; ``(None, [])`` if there is none."""
    if not path.exists():
        return None, []
    fingerprint: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    with path.open("r", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # torn write of the last line after a crash
            if "fingerprint" in obj and fingerprint is None and not records:
                fingerprint = obj["fingerprint"]
            else:
                records.append(obj)
    return fingerprint, records


class Journal:
    """Append-only writer; one JSON line per finished request, flushed immediately."""

    def __init__(self, path: Path, fingerprint: dict[str, Any]) -> None:
        self.path = path
        self._fh: TextIO | None = None
        self._fingerprint = fingerprint

    def __enter__(self) -> "Journal":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existing, _ = read_journal(self.path)
        if existing is not None and existing != self._fingerprint:
            raise ConfigurationError(
                f"{self.path} belongs to a different run ({existing}); use another `out` folder")
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._fh = self.path.open("a", encoding="utf-8")
        if not fresh:
            # Make sure a torn last line cannot swallow the next record.
            self._fh.write("\n")
        else:
            self._write({"fingerprint": self._fingerprint})
        return self

    def _write(self, obj: dict[str, Any]) -> None:
        if self._fh is None:
            raise RuntimeError("journal is not open")
        self._fh.write(json.dumps(obj, separators=(",", ":"), allow_nan=True) + "\n")
        self._fh.flush()

    def append(self, record: dict[str, Any]) -> None:
        """Persist one finished request."""
        self._write(record)

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.flush()
            try:
                os.fsync(self._fh.fileno())
            except OSError:
                pass
            self._fh.close()
            self._fh = None
