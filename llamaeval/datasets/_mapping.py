"""From retrieved chunks to judged documents: one named, explicit strategy.

Judgements are per document, retrieval returns chunks. :class:`DocumentMapping`
says how a chunk becomes a document id and how the chunks of one document are
merged, so a score always states what it measured:

- ``level="document"`` (default, strategy ``"metadata:<key>|file-stem"``): the
  document id is the chunk's ``metadata[<key>]`` (default ``doc_id``, set by
  :func:`~llamaeval.ingest`), else the file name without its extension
  (``"471.txt"`` -> ``"471"``). The chunks of one document collapse onto the
  document's best (smallest) rank; ranks are renumbered 1..n per request.
- ``level="chunk"``: chunk-level judgements. Each chunk is its own unit with id
  ``"<doc_id>#<chunk_index>"``; nothing collapses. Write qrels with those ids
  (see :func:`chunk_qrels` to derive them from document judgements).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

import pandas as pd

from llamaeval._errors import ConfigurationError
from llamaeval._keys import REQUEST_KEY

#: Columns that identify one retrieval request in runner/client frames.
REQUEST_COLUMNS: tuple[str, ...] = REQUEST_KEY


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _stem(file_name: Any) -> str | None:
    if _missing(file_name) or not str(file_name):
        return None
    name = PurePosixPath(str(file_name).replace("\\", "/")).name
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


@dataclass(frozen=True)
class DocumentMapping:
    """How retrieved chunks map to judged documents (see the module docstring)."""

    metadata_key: str = "doc_id"
    level: Literal["document", "chunk"] = "document"
    fallback_to_file_name: bool = True

    def __post_init__(self) -> None:
        if not self.metadata_key:
            raise ConfigurationError("metadata_key must be a non-empty string")
        if self.level not in ("document", "chunk"):
            raise ConfigurationError(f"level must be 'document' or 'chunk', got {self.level!r}")

    @property
    def strategy(self) -> str:
        """A short, stable name for manifests and reports, e.g. ``"document:metadata:doc_id|file-stem"``."""
        source = f"metadata:{self.metadata_key}" + ("|file-stem" if self.fallback_to_file_name else "")
        return f"{self.level}:{source}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (for run manifests)."""
        return {"metadata_key": self.metadata_key, "level": self.level,
                "fallback_to_file_name": self.fallback_to_file_name, "strategy": self.strategy}

    def doc_id(self, metadata: Mapping[str, Any] | None, file_name: str | None = None) -> str | None:
        """The document id of one result: ``metadata[metadata_key]``, else the file name's stem, else None."""
        value = (metadata or {}).get(self.metadata_key)
        if not _missing(value) and str(value) != "":
            return str(value)
        if self.fallback_to_file_name:
            return _stem(file_name if file_name is not None else (metadata or {}).get("file_name"))
        return None

    def unit_id(self, metadata: Mapping[str, Any] | None, file_name: str | None = None,
                chunk_index: Any = None) -> str | None:
        """The judged unit: the document id, or ``"<doc_id>#<chunk_index>"`` at chunk level."""
        doc = self.doc_id(metadata, file_name)
        if doc is None or self.level == "document":
            return doc
        index = chunk_index if not _missing(chunk_index) else (metadata or {}).get("chunk_index")
        return None if _missing(index) else f"{doc}#{int(index)}"

    def _ids_for(self, frame: pd.DataFrame) -> pd.Series:
        key = self.metadata_key
        if key in frame.columns:
            ids = frame[key].astype(object).where(frame[key].notna(), None)
            ids = ids.map(lambda v: None if v is None or str(v) == "" else str(v))
        else:
            ids = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        if self.fallback_to_file_name and "file_name" in frame.columns:
            missing = ids.isna()
            if missing.any():  # stems only where the metadata key gave nothing
                ids[missing] = frame.loc[missing, "file_name"].map(_stem)
        if self.level == "chunk":
            if "chunk_index" not in frame.columns:
                raise ConfigurationError("chunk-level mapping needs a chunk_index column in the results")
            idx = frame["chunk_index"]
            ids = pd.Series([None if d is None or _missing(i) else f"{d}#{int(i)}" for d, i in zip(ids, idx)],
                            index=frame.index, dtype=object)
        return ids

    def collapse(self, results: pd.DataFrame, by: Sequence[str] | None = None) -> pd.DataFrame:
        """Give every row a ``doc_id`` and keep each document's best-ranked chunk per request.

        ``results`` needs ``rank`` plus either the metadata column (``doc_id``) or
        ``file_name``. ``by`` are the columns naming one request (default: those of
        ``pipeline_id, mode, top_k, query_id`` present). Rows without a rank (failed or
        empty requests) are kept as they are. Ranks are renumbered 1..n per request;
        the other columns come from the best chunk.
        """
        if "rank" not in results.columns:
            raise ConfigurationError("results need a 'rank' column to collapse chunks to documents")
        group = [c for c in (by if by is not None else REQUEST_COLUMNS) if c in results.columns]
        missing_by = [c for c in (by or ()) if c not in results.columns]
        if missing_by:
            raise ConfigurationError(f"results have no column(s) {missing_by} to group requests by")
        frame = results.copy()
        frame["doc_id"] = self._ids_for(frame).astype(object)
        ranked = frame["rank"].notna()
        unranked = frame[~ranked]
        hits = frame[ranked].sort_values([*group, "rank"], kind="stable")
        keyed = hits["doc_id"].notna()
        # Chunks without any document id cannot be judged; keep them (they count as non-relevant).
        dedup = pd.concat([hits[keyed].drop_duplicates([*group, "doc_id"], keep="first"), hits[~keyed]])
        dedup = dedup.sort_values([*group, "rank"], kind="stable")
        if group:
            dedup["rank"] = dedup.groupby(group, sort=False, dropna=False).cumcount() + 1
        else:
            dedup["rank"] = range(1, len(dedup) + 1)
        out = pd.concat([dedup, unranked]) if len(unranked) else dedup
        if len(out):
            out["rank"] = out["rank"].astype("Int64")
        return out.reset_index(drop=True)


def chunk_qrels(qrels: pd.DataFrame, chunks: pd.DataFrame) -> pd.DataFrame:
    """Chunk-level judgements derived from document judgements: every chunk inherits its document's grade.

    ``chunks`` lists the chunks that exist (``doc_id``, ``chunk_index``), e.g. collected
    from retrieval results. Replace grades by hand where only some chunks answer the query.
    """
    for column in ("doc_id", "chunk_index"):
        if column not in chunks.columns:
            raise ConfigurationError(f"chunks need a {column!r} column")
    units = chunks[["doc_id", "chunk_index"]].dropna().drop_duplicates().astype({"doc_id": str})
    units["unit"] = units["doc_id"] + "#" + units["chunk_index"].astype(int).astype(str)
    merged = qrels.astype({"doc_id": str}).merge(units, on="doc_id")
    out = merged[["query_id", "unit", "relevance"]].rename(columns={"unit": "doc_id"})
    return out.sort_values(["query_id", "doc_id"]).reset_index(drop=True)
