"""Where documents come from when there are no judgements: a QuerySet, a DataFrame, a folder, a pipeline.

Every source gives the same corpus frame (``doc_id``, ``title``, ``text``) whose ids are
the ones a benchmark run reports (``DocumentMapping``: metadata ``doc_id``, else the
file name without its extension).
"""

from __future__ import annotations

import html
import re
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from llamaeval._errors import ConfigurationError, QuerySetError
from llamaeval.datasets._mapping import _stem
from llamaeval.datasets._queryset import QuerySet

def _corpus_from_frame(frame: pd.DataFrame) -> pd.DataFrame:
    from llamaeval.datasets._formats import _apply_columns

    docs = _apply_columns(frame, "corpus", None)
    if "doc_id" not in docs.columns or "text" not in docs.columns:
        raise QuerySetError(f"documents need a doc_id and a text column; got {list(frame.columns)}")
    title = docs["title"] if "title" in docs.columns else pd.Series([""] * len(docs), index=docs.index)
    out = pd.DataFrame({"doc_id": docs["doc_id"].astype(str).str.strip(),
                        "title": title.fillna("").astype(str), "text": docs["text"].fillna("").astype(str)})
    dup = out["doc_id"][out["doc_id"].duplicated()].unique()
    if len(dup):
        raise QuerySetError(f"documents: {len(dup)} duplicate doc_id(s), e.g. {list(dup[:5])}")
    return out.reset_index(drop=True)


def documents(source: Any) -> tuple[str, pd.DataFrame]:
    """``(name, corpus frame doc_id/title/text)`` of a QuerySet, a DataFrame, a folder of
    files (see :func:`read_folder`) or a bundled collection's name."""
    if isinstance(source, QuerySet):
        if source.corpus is None:
            raise QuerySetError(f"query set {source.name!r} has no corpus to generate queries from")
        return source.name, _corpus_from_frame(source.corpus)
    if isinstance(source, pd.DataFrame):
        return "documents", _corpus_from_frame(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            from llamaeval.datasets._formats import detect_format, load_folder

            try:
                detect_format(path)
            except QuerySetError:  # not a query-set layout: a folder of documents
                return path.name or "documents", read_folder(path)
            return documents(load_folder(path))
        from llamaeval.datasets._registry import load_queryset

        return documents(load_queryset(str(source)))
    raise ConfigurationError("documents come from a QuerySet, a DataFrame (doc_id, [title,] text), a folder "
                             f"or a bundled collection name; got {type(source).__name__} "
                             "(for a pipeline: pipeline_documents(client, pipeline_id))")


_TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".text")


def _split_title(raw: str, suffix: str) -> tuple[str, str]:
    if suffix in (".html", ".htm"):
        hit = re.search(r"<title[^>]*>(.*?)</title>", raw, re.S | re.I)
        body = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S | re.I)
        body = re.sub(r"<[^>]+>", " ", body)
        return (html.unescape(hit.group(1)).strip() if hit else ""), html.unescape(" ".join(body.split()))
    text = raw.strip()
    if suffix in (".md", ".markdown"):
        hit = re.match(r"#+\s+(.*)", text)
        if hit:
            return hit.group(1).strip(), text[hit.end():].strip()
    head, sep, rest = text.partition("\n\n")
    if sep and "\n" not in head.strip() and len(head.split()) <= 30:  # "title, blank line, text" (as ingest writes)
        return head.strip(), rest.strip()
    return "", text


def read_folder(folder: str | Path, pattern: str = "**/*") -> pd.DataFrame:
    """Text documents of a folder as a corpus frame: ``doc_id`` = the file name without its
    extension (what :class:`~llamaeval.DocumentMapping` falls back to), ``title`` = an HTML
    ``<title>``, a Markdown heading, or a first line followed by a blank line, ``text`` = the rest.

    Reads ``.txt .md .markdown .rst .html .htm .text`` files (hidden ones skipped); two
    files with the same stem raise QuerySetError (their results could not be told apart).
    """
    root = Path(folder)
    rows, seen = [], {}
    for path in sorted(root.glob(pattern)):
        rel = path.relative_to(root)
        if not path.is_file() or path.suffix.lower() not in _TEXT_SUFFIXES \
                or any(part.startswith(".") for part in rel.parts):
            continue
        doc_id = path.stem
        if doc_id in seen:
            raise QuerySetError(f"{root}: {seen[doc_id]} and {rel} have the same document id {doc_id!r} "
                                "(the file name without extension); rename one")
        seen[doc_id] = rel
        title, text = _split_title(path.read_text("utf-8", errors="replace"), path.suffix.lower())
        rows.append((doc_id, title, text))
    if not rows:
        raise QuerySetError(f"{root}: no text documents ({', '.join(_TEXT_SUFFIXES)}) under it")
    return pd.DataFrame(rows, columns=["doc_id", "title", "text"])


# ---------------------------------------------------------------------------- from a pipeline
_MAX_NODES = 100  # the real API's largest dense_similarity_top_k


def _file_doc_ids(files: pd.DataFrame, metadata_key: str) -> pd.Series:
    ids = pd.Series([None] * len(files), index=files.index, dtype=object)
    for column in (f"metadata.{metadata_key}", metadata_key):
        if column in files.columns:
            values = files[column].astype(object)
            ids = ids.where(ids.notna(), values.where(values.notna(), None))
    for column in ("name", "file_name"):
        if column in files.columns:
            ids = ids.where(ids.notna(), files[column].map(_stem))
    return ids


def _stitch(chunks: pd.DataFrame) -> str:
    """A document's text from its chunks: ordered by start offset, overlaps dropped."""
    if "start_char" not in chunks.columns or chunks["start_char"].isna().any():
        order = chunks.sort_values("chunk_index") if "chunk_index" in chunks.columns else chunks
        return "\n".join(str(t) for t in order["text"])
    parts, cursor = [], 0
    for start, end, text in chunks.sort_values("start_char")[["start_char", "end_char", "text"]].itertuples(
            index=False):
        start, text = int(start), str(text)
        end = int(end) if pd.notna(end) else start + len(text)
        if end - start != len(text):  # offsets do not index this text: plain concatenation
            parts.append(("\n" if parts else "") + text)
            cursor = max(cursor, end)
            continue
        if start >= cursor:
            parts.append(("\n" if parts and start > cursor else "") + text)
        elif end > cursor:
            parts.append(text[cursor - start:])
        cursor = max(cursor, end)
    return "".join(parts)


def pipeline_documents(client: Any, pipeline_id: str, *, metadata_key: str = "doc_id",
                       query: str = "document", progress: bool = False) -> pd.DataFrame:
    """Read a pipeline's documents back through the client: a corpus frame ``doc_id, title, text``.

    - Text documents of the real LlamaCloud API (``pipelines.documents``): their text as stored.
    - Files: the real API has no call that returns a file's text, so the text is stitched
      from the file's indexed chunks, fetched by retrieve calls filtered on
      ``metadata[metadata_key]`` (dense ranking, up to 100 chunks per call; a document with
      more chunks is cut to 100 with a warning). Needs the real dialect (LlamaCloud, or the
      local server's ``/cloud`` base URL) and the files' ``metadata_key`` custom metadata
      (``le.ingest`` sets ``doc_id``).
    - The simplified API (the local server's root URL) can list a pipeline's files but not
      read their text: ConfigurationError; pass the folder or DataFrame the pipeline was
      built from instead (``simulate_queries(folder)``).

    A title is the first line when a blank line follows it (how ``le.ingest`` writes files).
    """
    frames = []
    try:
        docs = client.pipelines.documents.list(pipeline_id)
    except ConfigurationError:
        docs = None  # simplified dialect: no documents API
    if docs is not None and len(docs):
        key = f"metadata.{metadata_key}"
        ids = docs[key].where(docs[key].notna(), docs["id"]) if key in docs.columns else docs["id"]
        frames.append(pd.DataFrame({"doc_id": ids.astype(str), "raw": docs["text"].fillna("").astype(str)}))
    files = client.pipelines.files.list(pipeline_id)
    if files is not None and len(files):
        frames.append(_files_text(client, pipeline_id, files, metadata_key, query, progress))
    if not frames:
        raise QuerySetError(f"pipeline {pipeline_id} has no files or documents")
    raw = pd.concat(frames, ignore_index=True).drop_duplicates("doc_id", keep="first")
    split = [_split_title(text, ".txt") for text in raw["raw"]]
    return pd.DataFrame({"doc_id": raw["doc_id"].to_numpy(), "title": [t for t, _ in split],
                         "text": [x for _, x in split]})


def _files_text(client: Any, pipeline_id: str, files: pd.DataFrame, metadata_key: str, query: str,
                progress: bool) -> pd.DataFrame:
    from tqdm.auto import tqdm

    from llamaeval.client import metadata_filters

    if f"metadata.{metadata_key}" not in files.columns:
        raise ConfigurationError(f"the pipeline's files have no {metadata_key!r} metadata to fetch their chunks by; "
                                 "pass the folder or DataFrame the pipeline was built from instead")
    files = files.assign(_doc=_file_doc_ids(files, metadata_key))
    files = files[files[f"metadata.{metadata_key}"].notna()]
    sizes = (pd.to_numeric(files["num_chunks"], errors="coerce") if "num_chunks" in files.columns
             else pd.Series(float("nan"), index=files.index))
    # batches of documents whose chunks fit one call; unknown chunk counts go one by one
    batches, batch, room = [], [], _MAX_NODES
    for doc, n in zip(files["_doc"].astype(str), sizes):
        n = _MAX_NODES if pd.isna(n) or n < 1 else int(n)
        if batch and n > room:
            batches.append(batch)
            batch, room = [], _MAX_NODES
        batch.append(doc)
        room -= n
    if batch:
        batches.append(batch)
    rows, cut = [], []
    for batch in tqdm(batches, desc="read pipeline", unit="call", disable=not progress):
        try:
            res = client.pipelines.retrieve(pipeline_id, query, top_k=_MAX_NODES, alpha=1.0,
                                            dense_similarity_top_k=_MAX_NODES, enable_reranking=False,
                                            search_filters=metadata_filters((metadata_key, "in", batch)))
        except ConfigurationError as exc:
            raise ConfigurationError(
                "this server speaks the simplified API, which cannot read a pipeline's text back; pass the "
                "folder or DataFrame the pipeline was built from, or connect with the real dialect "
                f"(the local server: base_url + '/cloud'). ({exc})") from None
        frame = res.frame
        if len(frame) >= _MAX_NODES and len(batch) == 1:
            cut.append(batch[0])
        key = "doc_id" if metadata_key == "doc_id" else metadata_key
        if key not in frame.columns and f"metadata.{metadata_key}" in frame.columns:
            key = f"metadata.{metadata_key}"
        for doc, chunks in frame.groupby(frame[key].astype(str), sort=False):
            rows.append((doc, _stitch(chunks)))
    if cut:
        warnings.warn(f"{len(cut)} document(s) have more than {_MAX_NODES} chunks; read only {_MAX_NODES} of "
                      f"each, e.g. {cut[:3]}", stacklevel=3)
    return pd.DataFrame(rows, columns=["doc_id", "raw"])
