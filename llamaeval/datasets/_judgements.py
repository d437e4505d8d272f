"""Judging a pool: a judgements file that is written as judgements are made, and resumes.

The output is a query-set folder that :func:`~llamaeval.load_queryset` reads:

- ``fmt="trec"``: ``topics.txt`` (the pooled queries) and ``qrels.txt``
  (``query_id 0 doc_id grade``, one line per judgement, appended at once);
- ``fmt="csv"``: ``queries.csv`` and ``qrels.csv`` (``query_id,doc_id,relevance``);

plus ``judging.json`` (the grade scale and the pool it came from). A pair judged twice
(after an undo, or in another session) keeps its last grade. Skips are not written: a
skipped document comes back in the next session.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from llamaeval._errors import ConfigurationError, QuerySetError
from llamaeval._keys import DEFAULT_GRADES
from llamaeval.datasets._pooling import Pool

STATE_FILE = "judging.json"
_FILES = {"trec": ("topics.txt", "qrels.txt"), "csv": ("queries.csv", "qrels.csv")}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class JudgementLog:
    """An append-only judgements file inside a query-set folder (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike[str], fmt: str | None = None) -> None:
        self.folder = Path(folder)
        found = [f for f, (_, qrels) in _FILES.items() if (self.folder / qrels).is_file()]
        if fmt is None:
            fmt = found[0] if found else "trec"
        if fmt not in _FILES:
            raise ConfigurationError(f"fmt must be 'trec' or 'csv', got {fmt!r}")
        if found and fmt not in found:
            raise ConfigurationError(f"{self.folder} already holds {found[0]} judgements; use fmt={found[0]!r} "
                                     "or another folder")
        self.fmt = fmt
        self.topics_path = self.folder / _FILES[fmt][0]
        self.path = self.folder / _FILES[fmt][1]

    # ------------------------------------------------------------------ reading
    def entries(self) -> list[tuple[str, str, int]]:
        """Every judgement line in file order: ``(query_id, doc_id, grade)``."""
        if not self.path.is_file():
            return []
        out: list[tuple[str, str, int]] = []
        with open(self.path, encoding="utf-8", newline="") as fh:
            if self.fmt == "trec":
                for number, line in enumerate(fh, 1):
                    parts = line.split()
                    if not parts:
                        continue
                    if len(parts) != 4:
                        raise QuerySetError(f"{self.path}: line {number} is not 'query_id 0 doc_id grade'")
                    out.append((parts[0], parts[2], int(parts[3])))
            else:
                reader = csv.reader(fh)
                header = next(reader, None)
                if header and header[:3] != ["query_id", "doc_id", "relevance"]:
                    raise QuerySetError(f"{self.path}: header must be query_id,doc_id,relevance")
                for row in reader:
                    if row:
                        out.append((row[0], row[1], int(row[2])))
        return out

    def grades(self) -> dict[tuple[str, str], int]:
        """The current grade of every judged pair (the last line of a pair wins)."""
        return {(q, d): g for q, d, g in self.entries()}

    def frame(self) -> pd.DataFrame:
        """The current judgements as a qrels frame ``query_id, doc_id, relevance``."""
        rows = [(q, d, g) for (q, d), g in self.grades().items()]
        return pd.DataFrame(rows, columns=["query_id", "doc_id", "relevance"]).astype({"relevance": "int64"})

    def read_queries(self) -> pd.DataFrame:
        if not self.topics_path.is_file():
            return pd.DataFrame(columns=["query_id", "text"])
        if self.fmt == "trec":
            from llamaeval.datasets._formats import read_trec_topics

            return read_trec_topics(self.topics_path)
        return pd.read_csv(self.topics_path, dtype=str, keep_default_na=False)[["query_id", "text"]]

    # ------------------------------------------------------------------ writing
    def write_queries(self, queries: pd.DataFrame) -> None:
        """Write the topics file: the queries already there, then any new ones."""
        self.folder.mkdir(parents=True, exist_ok=True)
        old = self.read_queries()
        known = set(old["query_id"])
        new = queries[~queries["query_id"].isin(known)]
        merged = pd.concat([old, new[["query_id", "text"]]], ignore_index=True)
        if self.fmt == "trec":
            bad = [q for q in merged["query_id"] if not q or any(c.isspace() for c in q)]
            if bad:
                raise ConfigurationError(f"query ids with white space cannot be written as TREC ({bad[:3]}); "
                                         "use fmt='csv'")
            from llamaeval.datasets._formats import _escape

            text = "".join(f"<top>\n<num> Number: {q}\n<title> {_escape(' '.join(str(t).split()))}\n</top>\n\n"
                           for q, t in merged[["query_id", "text"]].itertuples(index=False))
        else:
            buffer = io.StringIO()
            merged[["query_id", "text"]].to_csv(buffer, index=False, lineterminator="\n")
            text = buffer.getvalue()
        if not self.topics_path.is_file() or len(new):
            _atomic_write(self.topics_path, text)
        if not self.path.is_file():
            _atomic_write(self.path, "query_id,doc_id,relevance\n" if self.fmt == "csv" else "")

    def _line(self, query_id: str, doc_id: str, grade: int) -> str:
        if self.fmt == "trec":
            if any(c.isspace() for c in doc_id) or not doc_id:
                raise ConfigurationError(f"document id {doc_id!r} has white space: use fmt='csv'")
            return f"{query_id} 0 {doc_id} {int(grade)}\n"
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([query_id, doc_id, int(grade)])
        return buffer.getvalue()

    def append(self, query_id: str, doc_id: str, grade: int) -> None:
        """Write one judgement now (flushed and synced to disk before returning)."""
        line = self._line(query_id, doc_id, grade)
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def remove_last(self, query_id: str | None = None, doc_id: str | None = None) -> tuple[str, str, int] | None:
        """Remove the last judgement line (of this pair, when given); returns it, or None."""
        entries = self.entries()
        for i in range(len(entries) - 1, -1, -1):
            q, d, _ = entries[i]
            if query_id is None or (q == query_id and d == doc_id):
                removed = entries.pop(i)
                head = "query_id,doc_id,relevance\n" if self.fmt == "csv" else ""
                _atomic_write(self.path, head + "".join(self._line(*e) for e in entries))
                return removed
        return None


def _corpus_texts(corpus: Any) -> dict[str, tuple[str, str]]:
    if corpus is None:
        return {}
    frame = getattr(corpus, "corpus", corpus)  # a QuerySet, or a DataFrame
    if frame is None:
        return {}
    if not isinstance(frame, pd.DataFrame) or not {"doc_id", "text"} <= set(frame.columns):
        raise ConfigurationError("corpus must be a QuerySet with a corpus or a DataFrame with doc_id, [title,] text")
    titles = frame["title"].fillna("").astype(str) if "title" in frame.columns else [""] * len(frame)
    return {str(d): (str(t), str(x)) for d, t, x in zip(frame["doc_id"], titles, frame["text"].fillna(""))}


class JudgingSession:
    """Judge a :class:`Pool` item by item; every judgement is saved at once, a new session resumes.

    ``grade(g)`` judges the current document and moves on, ``skip()`` leaves it for
    later (skipped documents come back when nothing else is left), ``undo()`` takes the
    last action back (in a resumed session with nothing to undo, the file's last
    judgement). ``current`` is the item shown (None when every document is judged).
    """

    def __init__(self, pool: Pool, out: str | os.PathLike[str], *, corpus: Any = None,
                 grades: Mapping[int, str] | None = None, fmt: str | None = None) -> None:
        if not isinstance(pool, Pool):
            raise ConfigurationError(f"pool must be a llamaeval.datasets.Pool, got {type(pool).__name__}")
        if len(pool) == 0:
            raise ConfigurationError("the pool is empty: nothing to judge")
        self.pool = pool
        self.grades = dict(grades) if grades is not None else dict(DEFAULT_GRADES)
        if not self.grades or not all(isinstance(g, int) and not isinstance(g, bool) for g in self.grades):
            raise ConfigurationError("grades must map int grades to labels, e.g. {0: 'not relevant', 1: 'relevant'}")
        self.log = JudgementLog(out, fmt)
        self.log.write_queries(pool.queries())
        self._write_state()
        self.texts = _corpus_texts(corpus)
        self._items = list(pool.items[["query_id", "query", "doc_id"]].itertuples(index=False, name=None))
        self._index = {(q, d): i for i, (q, _, d) in enumerate(self._items)}
        self._judged: dict[tuple[str, str], int] = {
            k: g for k, g in self.log.grades().items() if k in self._index}
        self._skipped: list[int] = []
        self._history: list[tuple[str, int]] = []  # ("grade" | "skip", item index)
        self._pos: int | None = self._next()

    # ------------------------------------------------------------------ state
    def _write_state(self) -> None:
        path = self.log.folder / STATE_FILE
        state = json.loads(path.read_text("utf-8")) if path.is_file() else {
            "created_at": datetime.now(timezone.utc).isoformat()}
        state.update({"format": self.log.fmt, "grades": {str(g): label for g, label in self.grades.items()},
                      "pool": self.pool.manifest(), "updated_at": datetime.now(timezone.utc).isoformat()})
        _atomic_write(path, json.dumps(state, indent=2, default=str) + "\n")

    def _next(self) -> int | None:
        skipped = set(self._skipped)
        for i, (q, _, d) in enumerate(self._items):
            if (q, d) not in self._judged and i not in skipped:
                return i
        left = [i for i in self._skipped if (self._items[i][0], self._items[i][2]) not in self._judged]
        self._skipped = []  # only skipped documents are left: show them again, in skip order
        return left[0] if left else None

    @property
    def current(self) -> dict[str, Any] | None:
        """The item to judge: ``position``, ``query_id``, ``query``, ``doc_id``, ``title``, ``text``."""
        if self._pos is None:
            return None
        q, text, d = self._items[self._pos]
        title, body = self.texts.get(d, ("", ""))
        return {"position": self._pos, "query_id": q, "query": text, "doc_id": d, "title": title, "text": body,
                "known": d in self.texts}

    @property
    def done(self) -> bool:
        return self._pos is None

    @property
    def n_judged(self) -> int:
        return len(self._judged)

    @property
    def n_skipped(self) -> int:
        return len(self._skipped)

    def __len__(self) -> int:
        return len(self._items)

    def judgements(self) -> pd.DataFrame:
        """The judgements of this pool so far (``query_id, doc_id, relevance``), in pool order."""
        rows = [(q, d, self._judged[(q, d)]) for q, _, d in self._items if (q, d) in self._judged]
        return pd.DataFrame(rows, columns=["query_id", "doc_id", "relevance"]).astype({"relevance": "int64"})

    # ------------------------------------------------------------------ actions
    def grade(self, grade: int) -> None:
        """Judge the current document ``grade`` (saved at once) and move to the next one."""
        if isinstance(grade, bool) or grade not in self.grades:
            raise ConfigurationError(f"grade must be one of {sorted(self.grades)}, got {grade!r}")
        if self._pos is None:
            raise ConfigurationError("every document of the pool is judged")
        q, _, d = self._items[self._pos]
        self.log.append(q, d, int(grade))
        self._judged[(q, d)] = int(grade)
        self._history.append(("grade", self._pos))
        self._pos = self._next()

    def skip(self) -> None:
        """Leave the current document for later."""
        if self._pos is None:
            return
        self._skipped.append(self._pos)
        self._history.append(("skip", self._pos))
        self._pos = self._next()

    def undo(self) -> bool:
        """Take the last action back and show its document again; False when there is nothing to undo."""
        if self._history:
            action, pos = self._history.pop()
            q, _, d = self._items[pos]
            if action == "grade":
                self.log.remove_last(q, d)
                previous = self.log.grades().get((q, d))
                if previous is None:
                    self._judged.pop((q, d), None)
                else:
                    self._judged[(q, d)] = previous
            elif pos in self._skipped:
                self._skipped.remove(pos)
            self._pos = pos
            return True
        entries = [e for e in self.log.entries() if (e[0], e[1]) in self._index]
        if not entries:
            return False
        q, d, _ = entries[-1]
        self.log.remove_last(q, d)
        previous = self.log.grades().get((q, d))
        if previous is None:
            self._judged.pop((q, d), None)
        else:
            self._judged[(q, d)] = previous
        self._pos = self._index[(q, d)]
        return True

    def queryset(self, name: str | None = None) -> Any:
        """The judgements so far as a QuerySet (what ``le.load_queryset(out)`` reads)."""
        from llamaeval.datasets._formats import load_folder

        return load_folder(self.log.folder, name=name or self.log.folder.name)
