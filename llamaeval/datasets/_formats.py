"""Readers and writers: BEIR folders, TREC topics/qrels/documents, CSV, JSONL, DataFrames.

Every reader returns a validated :class:`QuerySet`; every writer produces files its
reader loads back into an equal QuerySet (same content hash). Files ending in ``.gz``
are read and written gzip-compressed transparently.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import pandas as pd

from llamaeval._errors import QuerySetError
from llamaeval.datasets._queryset import OnError, QuerySet

PathLike = str | Path

# Column names other tools use, accepted without a mapping (canonical -> aliases).
_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "queries": {"query_id": ("_id", "qid", "id", "query-id", "topic_id"), "text": ("query", "title", "question")},
    "qrels": {"query_id": ("query-id", "qid", "_id", "topic_id"),
              "doc_id": ("corpus-id", "docid", "docno", "doc", "_id"),
              "relevance": ("score", "rel", "grade", "label", "judgement", "judgment")},
    "corpus": {"doc_id": ("_id", "docid", "docno", "id", "corpus-id"), "text": ("body", "contents", "content")},
}


# ---------------------------------------------------------------------------- file helpers
def _open(path: Path, mode: str = "rt") -> IO[Any]:
    if path.suffix == ".gz":
        if "w" in mode:
            # mtime=0: the same content gives byte-identical files (reproducible bundles)
            raw = gzip.GzipFile(filename="", mode="wb", fileobj=open(path, "wb"), mtime=0)  # noqa: SIM115
            return io.TextIOWrapper(raw, encoding="utf-8", newline="") if "t" in mode else raw
        return gzip.open(path, mode, encoding="utf-8" if "t" in mode else None)
    return open(path, mode, encoding="utf-8" if "t" in mode else None, newline="" if "w" in mode else None)


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with _open(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise QuerySetError(f"{path}: line {number} is not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise QuerySetError(f"{path}: line {number} is not a JSON object")
            yield record


def _read_jsonl(path: Path) -> pd.DataFrame:
    return pd.DataFrame.from_records(list(_iter_jsonl(path)))


def _write_jsonl(frame: pd.DataFrame, path: Path) -> None:
    with _open(path, "wt") as fh:
        for record in frame.to_dict(orient="records"):
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def _read_table(path: Path) -> pd.DataFrame:
    """CSV (or TSV by extension) with every cell a string; empty cells stay ''."""
    sep = "\t" if ".tsv" in path.suffixes else ","
    with _open(path) as fh:
        return pd.read_csv(fh, sep=sep, dtype=str, keep_default_na=False, quoting=csv.QUOTE_MINIMAL)


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    sep = "\t" if ".tsv" in path.suffixes else ","
    with _open(path, "wt") as fh:
        frame.to_csv(fh, sep=sep, index=False, lineterminator="\n")


def _read_any(source: PathLike | pd.DataFrame) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    if not path.is_file():
        raise QuerySetError(f"file not found: {path}")
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return _read_jsonl(path)
    if name.endswith((".csv", ".tsv")):
        return _read_table(path)
    if name.endswith((".trec", ".sgml", ".xml")) or "<DOC>" in _head(path):
        return read_trec_documents(path)
    raise QuerySetError(f"{path}: unknown format (expected .jsonl, .csv, .tsv or TREC <DOC> files, optionally .gz)")


def _head(path: Path, size: int = 4096) -> str:
    with _open(path) as fh:
        return fh.read(size)


# ---------------------------------------------------------------------------- columns
def _apply_columns(frame: pd.DataFrame, kind: str, columns: Mapping[str, Any] | None) -> pd.DataFrame:
    """Rename user columns to the canonical ones: explicit mapping first, then known aliases."""
    mapping: Mapping[str, str] = {}
    if columns:
        if kind in columns and isinstance(columns[kind], Mapping):
            mapping = columns[kind]
        elif all(isinstance(v, str) for v in columns.values()):
            mapping = columns  # flat: source name -> canonical name, for every frame
    renamed = frame.rename(columns={src: dst for src, dst in mapping.items() if src in frame.columns})
    for canonical, aliases in _ALIASES[kind].items():
        if canonical in renamed.columns:
            continue
        for alias in aliases:
            if alias in renamed.columns:
                renamed = renamed.rename(columns={alias: canonical})
                break
    return renamed


def from_frames(queries: pd.DataFrame, qrels: pd.DataFrame, corpus: pd.DataFrame | None = None, *,
                name: str = "custom", split: str = "test", columns: Mapping[str, Any] | None = None,
                on_error: OnError = "raise") -> QuerySet:
    """A QuerySet from DataFrames with named columns.

    ``columns`` maps your column names to the canonical ones, either flat
    (``{"qid": "query_id", "question": "text", "grade": "relevance"}``, applied to every
    frame) or per frame (``{"queries": {...}, "qrels": {...}, "corpus": {...}}``).
    Common names (``_id``, ``qid``, ``query-id``, ``corpus-id``, ``docno``, ``score``, ...)
    are recognised without a mapping. A ``split`` column in qrels selects the split.
    """
    q = _apply_columns(queries, "queries", columns)
    r = _apply_columns(qrels, "qrels", columns)
    if "split" in r.columns:
        available = sorted(set(r["split"].astype(str)))
        if split not in available:
            raise QuerySetError(f"qrels have no split {split!r}; available: {available}")
        r = r[r["split"].astype(str) == split]
    c = _apply_columns(corpus, "corpus", columns) if corpus is not None else None
    return QuerySet(name, q, r, c, split, on_error=on_error)


# ---------------------------------------------------------------------------- BEIR
def beir_splits(folder: PathLike) -> list[str]:
    """The qrels splits a BEIR folder holds (``qrels/<split>.tsv[.gz]``)."""
    qrels_dir = Path(folder) / "qrels"
    if not qrels_dir.is_dir():
        return []
    return sorted({p.name.split(".")[0] for p in qrels_dir.iterdir() if ".tsv" in p.suffixes})


def _read_beir_qrels(path: Path) -> pd.DataFrame:
    rows = []
    with _open(path) as fh:
        for number, line in enumerate(fh, 1):
            parts = line.rstrip("\r\n").split("\t")
            if not line.strip():
                continue
            if number == 1 and parts[:2] == ["query-id", "corpus-id"]:
                continue  # header
            if len(parts) == 4:  # tolerate TREC-style "qid 0 doc rel" rows
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                raise QuerySetError(f"{path}: line {number} has {len(parts)} tab-separated fields, expected 3 "
                                    "(query-id, corpus-id, score)")
            rows.append(parts)
    return pd.DataFrame(rows, columns=["query_id", "doc_id", "relevance"])


def load_beir(folder: PathLike, split: str = "test", *, name: str | None = None,
              on_error: OnError = "raise") -> QuerySet:
    """Load a BEIR folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv`` (each may be ``.gz``).

    ``queries`` keeps every query of the file; ``qrels`` only the chosen split, so
    :meth:`QuerySet.judged_queries` is what gets scored (SciFact: 300 of 1,109 on test).
    """
    root = Path(folder)
    if not root.is_dir():
        raise QuerySetError(f"not a folder: {root}")
    queries_path = _find(root, "queries.jsonl")
    if queries_path is None:
        raise QuerySetError(f"{root}: no queries.jsonl (or queries.jsonl.gz); not a BEIR folder")
    qrels_path = _find(root / "qrels", f"{split}.tsv")
    if qrels_path is None:
        raise QuerySetError(f"{root}: no judgements for split {split!r}; available splits: {beir_splits(root)}")
    corpus_path = _find(root, "corpus.jsonl")
    queries = _apply_columns(_read_jsonl(queries_path), "queries", None)
    corpus = _apply_columns(_read_jsonl(corpus_path), "corpus", None) if corpus_path else None
    return QuerySet(name or root.name, queries, _read_beir_qrels(qrels_path), corpus, split, on_error=on_error)


def write_beir(queryset: QuerySet, folder: PathLike, *, compress: bool = False) -> Path:
    """Write ``queryset`` as a BEIR folder (its split becomes ``qrels/<split>.tsv``); returns the folder."""
    root = Path(folder)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    gz = ".gz" if compress else ""
    _write_jsonl(queryset.queries.rename(columns={"query_id": "_id"}), root / f"queries.jsonl{gz}")
    if queryset.corpus is not None:
        _write_jsonl(queryset.corpus.rename(columns={"doc_id": "_id"})[["_id", "title", "text"]],
                     root / f"corpus.jsonl{gz}")
    qrels = queryset.qrels.rename(columns={"query_id": "query-id", "doc_id": "corpus-id", "relevance": "score"})
    _write_table(qrels, root / "qrels" / f"{queryset.split}.tsv{gz}")
    return root


# ---------------------------------------------------------------------------- TREC
_TOP = re.compile(r"<top>(.*?)</top>", re.S | re.I)
_TOPIC_XML = re.compile(r"<topic\b([^>]*)>(.*?)</topic>", re.S | re.I)
_FIELD = re.compile(r"<(num|title|desc|narr)>(.*?)(?=<(?:num|title|desc|narr|/top)>|\Z)", re.S | re.I)
_LABELS = re.compile(r"^\s*(Number|Topic|Description|Narrative)\s*:\s*", re.I)
_TOPIC_FIELDS = ("title", "desc", "narr")


def _clean(text: str) -> str:
    return _unescape(" ".join(_LABELS.sub("", re.sub(r"</?\w+>", " ", text)).split()))


def read_trec_topics(path: PathLike, field: str = "title") -> pd.DataFrame:
    """Topics as ``query_id, text``: classic SGML ``<top>``, XML ``<topic number=..>``, or ``qid<TAB>text`` lines.

    ``field`` picks the query text: ``"title"``, ``"desc"``, ``"narr"`` or a ``+``-joined
    combination such as ``"title+desc"``.
    """
    fields = field.split("+")
    if not fields or any(f not in _TOPIC_FIELDS for f in fields):
        raise QuerySetError(f"topic field must be one of {_TOPIC_FIELDS} or a '+' combination, got {field!r}")
    path = Path(path)
    with _open(path) as fh:
        content = fh.read()
    rows: list[tuple[str, str]] = []
    if _TOP.search(content):
        for block in _TOP.findall(content):
            parts = {tag.lower(): _clean(value) for tag, value in _FIELD.findall(block)}
            if "num" not in parts:
                raise QuerySetError(f"{path}: a <top> block has no <num>")
            rows.append((parts["num"], " ".join(parts.get(f, "") for f in fields).strip()))
    elif _TOPIC_XML.search(content):
        xml_names = {"title": ("query", "title"), "desc": ("question", "description", "desc"),
                     "narr": ("narrative", "narr")}
        for attrs, body in _TOPIC_XML.findall(content):
            number = re.search(r"number\s*=\s*\"?([^\"\s>]+)", attrs)
            if number is None:
                raise QuerySetError(f"{path}: a <topic> has no number attribute")
            texts = []
            for f in fields:
                for tag in xml_names[f]:
                    hit = re.search(rf"<{tag}>(.*?)</{tag}>", body, re.S | re.I)
                    if hit:
                        texts.append(_clean(hit.group(1)))
                        break
            rows.append((number.group(1), " ".join(texts).strip()))
    else:
        for number, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t", 1)
            if len(parts) != 2:
                raise QuerySetError(f"{path}: line {number} is neither a <top> topic nor 'qid<TAB>text'")
            rows.append((parts[0].strip(), parts[1].strip()))
    return pd.DataFrame(rows, columns=["query_id", "text"])


def read_trec_qrels(path: PathLike) -> pd.DataFrame:
    """TREC qrels (``qid iteration docno relevance``, whitespace-separated) as a qrels frame."""
    path = Path(path)
    rows = []
    with _open(path) as fh:
        for number, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise QuerySetError(f"{path}: line {number} has {len(parts)} fields, expected 4 "
                                    "(query_id iteration doc_id relevance)")
            rows.append((parts[0], parts[2], parts[3]))
    return pd.DataFrame(rows, columns=["query_id", "doc_id", "relevance"])


_DOC = re.compile(r"<DOC>(.*?)</DOC>", re.S | re.I)


def _tag(block: str, *names: str) -> str | None:
    for name in names:
        hit = re.search(rf"<{name}>(.*?)</{name}>", block, re.S | re.I)
        if hit:
            return hit.group(1).strip()
    return None


def read_trec_documents(path: PathLike) -> pd.DataFrame:
    """TREC SGML documents (``<DOC><DOCNO>..</DOCNO><TITLE>..</TITLE><TEXT>..</TEXT></DOC>``) as a corpus frame."""
    path = Path(path)
    with _open(path) as fh:
        content = fh.read()
    rows = []
    for block in _DOC.findall(content):
        docno = _tag(block, "DOCNO")
        if docno is None:
            raise QuerySetError(f"{path}: a <DOC> has no <DOCNO>")
        rows.append((docno, _unescape(_tag(block, "TITLE", "HEADLINE", "HEAD") or ""),
                     _unescape(_tag(block, "TEXT") or "")))
    return pd.DataFrame(rows, columns=["doc_id", "title", "text"])


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def load_trec(topics: PathLike, qrels: PathLike, corpus: PathLike | pd.DataFrame | None = None, *,
              name: str | None = None, split: str = "test", topic_field: str = "title",
              on_error: OnError = "raise") -> QuerySet:
    """Load TREC topics and qrels files, plus an optional corpus (TREC ``<DOC>``, JSONL, CSV or a DataFrame)."""
    queries = read_trec_topics(topics, topic_field)
    judgements = read_trec_qrels(qrels)
    docs = _apply_columns(_read_any(corpus), "corpus", None) if corpus is not None else None
    return QuerySet(name or Path(topics).stem, queries, judgements, docs, split, on_error=on_error)


def write_trec(queryset: QuerySet, folder: PathLike) -> Path:
    """Write ``topics.txt`` (SGML, query text as ``<title>``), ``qrels.txt`` and, with a corpus, ``docs.trec``."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    with _open(root / "topics.txt", "wt") as fh:
        for qid, text in queryset.queries[["query_id", "text"]].itertuples(index=False):
            fh.write(f"<top>\n<num> Number: {qid}\n<title> {_escape(text)}\n</top>\n\n")
    with _open(root / "qrels.txt", "wt") as fh:
        for qid, doc, rel in queryset.qrels.itertuples(index=False):
            fh.write(f"{qid} 0 {doc} {rel}\n")
    if queryset.corpus is not None:
        with _open(root / "docs.trec", "wt") as fh:
            for doc, title, text in queryset.corpus.itertuples(index=False):
                fh.write(f"<DOC>\n<DOCNO>{doc}</DOCNO>\n<TITLE>{_escape(title)}</TITLE>\n"
                         f"<TEXT>{_escape(text)}</TEXT>\n</DOC>\n")
    return root


# ---------------------------------------------------------------------------- CSV / JSONL
def _load_tables(reader: Any, queries: PathLike, qrels: PathLike, corpus: PathLike | None, name: str | None,
                 split: str, columns: Mapping[str, Any] | None, on_error: OnError) -> QuerySet:
    for p in (queries, qrels, corpus):
        if p is not None and not Path(p).is_file():
            raise QuerySetError(f"file not found: {p}")
    return from_frames(reader(Path(queries)), reader(Path(qrels)),
                       reader(Path(corpus)) if corpus is not None else None,
                       name=name or Path(queries).parent.name or "custom", split=split,
                       columns=columns, on_error=on_error)


def load_csv(queries: PathLike, qrels: PathLike, corpus: PathLike | None = None, *, name: str | None = None,
             split: str = "test", columns: Mapping[str, Any] | None = None, on_error: OnError = "raise") -> QuerySet:
    """Load CSV files (``.tsv`` is read tab-separated; ``.gz`` allowed); ``columns`` as in :func:`from_frames`."""
    return _load_tables(_read_table, queries, qrels, corpus, name, split, columns, on_error)


def load_jsonl(queries: PathLike, qrels: PathLike, corpus: PathLike | None = None, *, name: str | None = None,
               split: str = "test", columns: Mapping[str, Any] | None = None,
               on_error: OnError = "raise") -> QuerySet:
    """Load JSON-lines files (one object a line; ``.gz`` allowed); ``columns`` as in :func:`from_frames`."""
    return _load_tables(_read_jsonl, queries, qrels, corpus, name, split, columns, on_error)


def _write_tables(queryset: QuerySet, folder: PathLike, ext: str, writer: Any) -> Path:
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    writer(queryset.queries, root / f"queries.{ext}")
    writer(queryset.qrels, root / f"qrels.{ext}")
    if queryset.corpus is not None:
        writer(queryset.corpus, root / f"corpus.{ext}")
    return root


def write_csv(queryset: QuerySet, folder: PathLike) -> Path:
    """Write ``queries.csv``, ``qrels.csv`` and (with a corpus) ``corpus.csv`` with canonical columns."""
    return _write_tables(queryset, folder, "csv", _write_table)


def write_jsonl(queryset: QuerySet, folder: PathLike) -> Path:
    """Write ``queries.jsonl``, ``qrels.jsonl`` and (with a corpus) ``corpus.jsonl`` with canonical keys."""
    return _write_tables(queryset, folder, "jsonl", _write_jsonl)


def detect_format(folder: PathLike) -> str:
    """Which layout a folder holds: ``"beir"``, ``"csv"``, ``"jsonl"`` or ``"trec"``; QuerySetError if none."""
    root = Path(folder)
    if (root / "qrels").is_dir() and _find(root, "queries.jsonl"):
        return "beir"
    for ext in ("csv", "tsv"):
        if _find(root, f"queries.{ext}") and _find(root, f"qrels.{ext}"):
            return "csv"
    if _find(root, "queries.jsonl") and _find(root, "qrels.jsonl"):
        return "jsonl"
    if _find(root, "topics.txt") and _find(root, "qrels.txt"):
        return "trec"
    raise QuerySetError(
        f"{root}: not a query set folder. Expected one of: BEIR (queries.jsonl, corpus.jsonl, qrels/<split>.tsv); "
        "CSV (queries.csv, qrels.csv[, corpus.csv]); JSONL (queries.jsonl, qrels.jsonl[, corpus.jsonl]); "
        "TREC (topics.txt, qrels.txt[, docs.trec])")


def load_folder(folder: PathLike, split: str = "test", *, name: str | None = None,
                on_error: OnError = "raise", **options: Any) -> QuerySet:
    """Load a folder in any supported layout (see :func:`detect_format`)."""
    root = Path(folder)
    kind = detect_format(root)
    name = name or root.name
    if kind == "beir":
        return load_beir(root, split, name=name, on_error=on_error)
    if kind == "trec":
        corpus = _find(root, "docs.trec")
        return load_trec(_find(root, "topics.txt"), _find(root, "qrels.txt"), corpus,  # type: ignore[arg-type]
                         name=name, split=split, on_error=on_error, **options)
    ext = "jsonl" if kind == "jsonl" else ("csv" if _find(root, "queries.csv") else "tsv")
    loader = load_jsonl if kind == "jsonl" else load_csv
    return loader(_find(root, f"queries.{ext}"), _find(root, f"qrels.{ext}"),  # type: ignore[arg-type]
                  _find(root, f"corpus.{ext}"), name=name, split=split, on_error=on_error, **options)
