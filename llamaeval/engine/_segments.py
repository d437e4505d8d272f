"""Index segments and the BM25 postings merged from them (index format 2).

An index version is a small manifest naming its segments in chunk order. A segment holds
the chunks of one file: their entries, vectors and analysed terms (the term sequence of
every chunk, and its BM25 postings: term -> (chunk, term frequency), chunk lengths). A
segment never changes once written and its name is a hash of what shaped it, so a new
version shares every unchanged segment with the previous one (a hard link on disk, the
same object in memory) and writes only the segments of the files that were added or
changed: a sync of k files costs O(k) analysis and writes.

Why BM25 is not stored per segment: its per-(term, chunk) scores depend on global
statistics (number of chunks, average length, document frequency), so one new chunk changes
all of them. Segments store only what does not change — term frequencies and lengths — and
each loaded version merges them into one term-major postings list (``Postings``) and computes
the scores from them with bm25s' exact formulas and float types (``bm25_scores``). The merge
from the previous loaded version is linear numpy passes (drop removed chunks, renumber, append
the new postings at the end of each term's range: no sort), the bounded part of an
incremental sync; a cold load sorts once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Segment", "SegmentSet", "Postings", "make_segment", "read_segment", "write_segment", "segment_id",
           "bm25_scores"]

_MAGIC = b"LLSEG001"
_ALIGN = 64
#: what a segment's analysed terms depend on besides its text (part of every segment id)
ANALYSIS_KEYS = ("stemmer", "stopwords")


def segment_id(source: str, config: Any) -> str:
    """Segment name for ``source`` (a string that identifies the chunks and their file record:
    the caller's content key, or a hash of the content) under ``config``'s analysis settings."""
    analysis = {k: getattr(config, k) for k in ANALYSIS_KEYS}
    blob = json.dumps([_MAGIC.decode(), analysis, source], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:40]


class Segment:
    """One file's chunks, read-only once made: ``entries`` (IndexEntry), ``vectors`` (n x d
    float32), ``terms`` (sorted local vocabulary, interned), ``tokens``/``tok_ptr`` (each chunk's
    analysed term ids in order), ``post_ptr``/``post_doc``/``post_tf`` (term-major postings over
    local chunk numbers, "" for an empty chunk as bm25s does), ``doc_len`` (BM25 length)."""

    __slots__ = ("id", "entries", "vectors", "terms", "tokens", "tok_ptr", "post_ptr", "post_doc", "post_tf",
                 "doc_len", "_files")

    def __init__(self, id: str, entries: list[Any], vectors: np.ndarray, terms: list[str], tokens: np.ndarray,
                 tok_ptr: np.ndarray, post_ptr: np.ndarray, post_doc: np.ndarray, post_tf: np.ndarray,
                 doc_len: np.ndarray) -> None:
        self.id, self.entries, self.vectors, self.terms = id, entries, vectors, terms
        self.tokens, self.tok_ptr, self.post_ptr, self.post_doc, self.post_tf = tokens, tok_ptr, post_ptr, post_doc, post_tf
        self.doc_len = doc_len
        self._files: tuple[list[str], np.ndarray] | None = None

    def files(self) -> tuple[list[str], np.ndarray]:
        """(distinct file ids in order of first chunk, each chunk's position in that list); once."""
        if self._files is None:
            ids: dict[str, int] = {}
            codes = np.array([ids.setdefault(e.file_id, len(ids)) for e in self.entries], dtype=np.int64)
            self._files = (list(ids), codes)
        return self._files

    def __len__(self) -> int:
        return len(self.entries)

    def terms_of(self, i: int) -> list[str]:
        """Analysed terms of local chunk ``i`` in order."""
        terms = self.terms
        return [terms[t] for t in self.tokens[self.tok_ptr[i]:self.tok_ptr[i + 1]].tolist()]


def make_segment(sid: str, entries: list[Any], vectors: np.ndarray, analyzer: Any) -> Segment:
    """Analyse ``entries``' texts once into a segment named ``sid``."""
    analysed = analyzer.analyze_many([e.text for e in entries])
    vocab = set()
    for doc in analysed:
        vocab.update(doc)
    if any(not doc for doc in analysed):
        vocab.add("")  # bm25s indexes an empty chunk as [""]: length 1, one posting
    terms = [sys.intern(t) for t in sorted(vocab)]
    tid = {t: i for i, t in enumerate(terms)}
    lengths = np.array([len(d) for d in analysed], dtype=np.int64)
    tokens = np.fromiter((tid[t] for doc in analysed for t in doc), dtype=np.int32, count=int(lengths.sum()))
    tok_ptr = np.zeros(len(analysed) + 1, dtype=np.int64)
    np.cumsum(lengths, out=tok_ptr[1:])
    # postings: (term, chunk) pairs counted, term-major; an empty chunk holds "" once
    doc_of = np.repeat(np.arange(len(analysed), dtype=np.int64), lengths)
    term_of = tokens.astype(np.int64)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        doc_of = np.concatenate([doc_of, empty])
        term_of = np.concatenate([term_of, np.full(empty.size, tid[""], dtype=np.int64)])
    pairs, tf = np.unique(term_of * len(analysed) + doc_of, return_counts=True)
    post_ptr = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs // len(analysed), minlength=len(terms)), out=post_ptr[1:])
    doc_len = np.maximum(lengths, 1)
    return Segment(sid, list(entries), np.ascontiguousarray(vectors, dtype=np.float32), terms, tokens, tok_ptr,
                   post_ptr, (pairs % len(analysed)).astype(np.int32), tf.astype(np.int32), doc_len)


_ARRAYS = ("vectors", "tokens", "tok_ptr", "post_ptr", "post_doc", "post_tf", "doc_len")


def write_segment(path: Path, seg: Segment) -> int:
    """Write ``seg`` to ``path`` atomically (a temporary file renamed); returns its bytes.

    Layout: 8-byte magic, 8-byte little-endian header length, JSON header (entries, terms,
    array dtypes/shapes/offsets), then the arrays' raw bytes, each 64-byte aligned."""
    arrays = {name: np.ascontiguousarray(getattr(seg, name)) for name in _ARRAYS}
    layout = {}
    offset = 0
    for name, a in arrays.items():
        layout[name] = [a.dtype.str, list(a.shape), offset]
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    header = json.dumps({"id": seg.id, "entries": [vars(e) for e in seg.entries], "terms": seg.terms,
                         "arrays": layout}, ensure_ascii=False).encode("utf-8")
    pad = -(len(_MAGIC) + 8 + len(header)) % _ALIGN
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(_MAGIC + len(header).to_bytes(8, "little") + header + b" " * pad)
        for a in arrays.values():
            fh.write(a.tobytes())
            fh.write(b"\0" * (-a.nbytes % _ALIGN))
        size = fh.tell()
    os.replace(tmp, path)
    return size


def read_segment(path: Path) -> Segment:
    """A segment written by ``write_segment`` (ValueError when the file is not one)."""
    from llamaeval.engine._index import IndexEntry

    data = Path(path).read_bytes()
    if data[:8] != _MAGIC:
        raise ValueError(f"not an index segment: {Path(path).name}")
    n = int.from_bytes(data[8:16], "little")
    header = json.loads(data[16:16 + n].decode("utf-8"))
    base = 16 + n
    base += -base % _ALIGN
    arrays = {}
    for name in _ARRAYS:
        dtype, shape, off = header["arrays"][name]
        count = math.prod(shape)
        a = np.frombuffer(data, dtype=np.dtype(dtype), count=count, offset=base + off).reshape(shape)
        # copies (small) so that the file's bytes are freed once the loaded index holds the vectors
        arrays[name] = a if name == "vectors" else a.copy()
    return Segment(header["id"], [IndexEntry(**e) for e in header["entries"]], arrays["vectors"],
                   [sys.intern(t) for t in header["terms"]], arrays["tokens"], arrays["tok_ptr"], arrays["post_ptr"],
                   arrays["post_doc"], arrays["post_tf"], arrays["doc_len"])


class Postings:
    """Term-major BM25 postings of a sequence of segments: ``indptr`` (T+1), ``docs`` (chunk
    numbers), ``tf``; ``terms``/``vocab`` are global term ids, stable along a chain of versions
    (a term whose chunks are all gone keeps its id with no postings: ``SegmentSet.live_vocab``); ``doc_len`` per chunk.
    Within a term the postings are not in chunk order (scores are summed per chunk, so the
    order does not change them). Immutable: ``updated`` returns a new object."""

    def __init__(self, terms: list[str], vocab: dict[str, int], indptr: np.ndarray, docs: np.ndarray,
                 tf: np.ndarray, doc_len: np.ndarray, layout: list[tuple[str, int]],
                 gmaps: dict[str, np.ndarray]) -> None:
        self.terms, self.vocab, self.indptr, self.docs, self.tf = terms, vocab, indptr, docs, tf
        self.doc_len = doc_len
        self.layout = layout  # (segment id, first chunk) in order
        self._gmaps = gmaps  # segment id -> its local term ids' global ids

    @property
    def num_docs(self) -> int:
        return int(self.doc_len.shape[0])

    @staticmethod
    def _gmap(seg: Segment, terms: list[str], vocab: dict[str, int], gmaps: dict[str, np.ndarray]) -> np.ndarray:
        """Global ids of ``seg``'s terms (new terms get the next ids, appended to ``terms``)."""
        g = gmaps.get(seg.id)
        if g is None:
            n0 = len(vocab)
            g = np.fromiter((vocab.setdefault(t, len(vocab)) for t in seg.terms), dtype=np.int64,
                            count=len(seg.terms))
            terms.extend(seg.terms[i] for i in np.flatnonzero(g >= n0).tolist())
            gmaps[seg.id] = g
        return g

    @classmethod
    def build(cls, segments: list[Segment]) -> "Postings":
        """Postings of ``segments`` from scratch (one sort over all postings)."""
        terms: list[str] = []
        vocab: dict[str, int] = {}
        gmaps: dict[str, np.ndarray] = {}
        t_parts, d_parts, f_parts = [], [], []
        start = 0
        layout = []
        for seg in segments:
            g = cls._gmap(seg, terms, vocab, gmaps)
            t_parts.append(np.repeat(g, np.diff(seg.post_ptr)))
            d_parts.append(seg.post_doc.astype(np.int32) + np.int32(start))
            f_parts.append(seg.post_tf)
            layout.append((seg.id, start))
            start += len(seg)
        term = np.concatenate(t_parts) if t_parts else np.zeros(0, np.int64)
        order = np.argsort(term, kind="stable")
        indptr = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term, minlength=len(terms)), out=indptr[1:])
        docs = np.concatenate(d_parts)[order] if d_parts else np.zeros(0, np.int32)
        tf = np.concatenate(f_parts)[order] if f_parts else np.zeros(0, np.int32)
        doc_len = np.concatenate([s.doc_len for s in segments]) if segments else np.zeros(0, np.int64)
        return cls(terms, vocab, indptr, docs, tf, doc_len, layout, gmaps)

    def updated(self, segments: list[Segment]) -> "Postings":
        """The postings of ``segments`` (mostly this version's): removed segments' postings
        dropped, kept ones renumbered, new ones appended to their terms — linear passes over
        the postings, no sort. Rebuilt from scratch when half the terms would have no
        postings left (dead terms then stop accumulating)."""
        old_start = dict(self.layout)
        sizes = {sid: n for sid, n in zip((s for s, _ in self.layout),
                                           np.diff([*(st for _, st in self.layout), self.num_docs]))}
        old_to_new = np.full(self.num_docs, -1, dtype=np.int32)
        added: list[tuple[Segment, int]] = []
        layout = []
        start = 0
        for seg in segments:
            o = old_start.get(seg.id)
            if o is not None and sizes[seg.id] == len(seg):
                old_to_new[o:o + len(seg)] = np.arange(start, start + len(seg), dtype=np.int32)
            else:
                added.append((seg, start))
            layout.append((seg.id, start))
            start += len(seg)
        tf = self.tf
        indptr = self.indptr
        if np.array_equal(old_to_new, np.arange(self.num_docs, dtype=np.int32)):
            docs = self.docs  # only appended files: the old postings stand as they are
        else:
            docs = old_to_new[self.docs]
            gone = np.flatnonzero(docs < 0)
            if gone.size:
                indptr = indptr - np.searchsorted(gone, indptr)  # removed postings before each term
                keep = np.ones(docs.size, dtype=bool)
                keep[gone] = False
                docs, tf = docs[keep], tf[keep]
        terms = list(self.terms)
        vocab = dict(self.vocab)
        gmaps = {s.id: self._gmaps[s.id] for s in segments if s.id in self._gmaps}
        if added:
            a_term = np.concatenate([np.repeat(self._gmap(s, terms, vocab, gmaps), np.diff(s.post_ptr))
                                     for s, _ in added])
            a_doc = np.concatenate([s.post_doc.astype(np.int32) + np.int32(st) for s, st in added])
            a_tf = np.concatenate([s.post_tf for s, _ in added])
            order = np.argsort(a_term, kind="stable")
            a_term, a_doc, a_tf = a_term[order], a_doc[order], a_tf[order]
            if len(terms) + 1 > indptr.size:  # new terms: empty ranges at the end
                indptr = np.concatenate([indptr, np.full(len(terms) + 1 - indptr.size, indptr[-1])])
            at = indptr[a_term + 1]
            docs = np.insert(docs, at, a_doc)
            tf = np.insert(tf, at, a_tf)
            counts = np.zeros(len(terms) + 1, dtype=np.int64)
            np.cumsum(np.bincount(a_term, minlength=len(terms)), out=counts[1:])
            indptr = indptr + counts
        doc_len = np.concatenate([s.doc_len for s in segments]) if segments else np.zeros(0, np.int64)
        out = Postings(terms, vocab, indptr, docs, tf, doc_len, layout, gmaps)
        if np.count_nonzero(np.diff(indptr)) * 2 < len(terms):
            return Postings.build(segments)
        return out


def bm25_scores(p: Postings, k1: float, b: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(float32 score per posting, float64 df per term) of ``p`` under bm25s' ``method``
    (lucene, robertson, atire) with the float types bm25s uses, so the scores equal a bm25s
    index of the same chunks: idf float32, the tf part float64, the product float32."""
    n = p.num_docs
    df = np.diff(p.indptr).astype(np.float64)
    live = df > 0
    if method == "lucene":
        def inner(x: int) -> float:
            return math.log(1 + (n - x + 0.5) / (x + 0.5))
    elif method == "robertson":
        def inner(x: int) -> float:
            return math.log(max((n - x + 0.5) / (x + 0.5), 1))
    elif method == "atire":
        def inner(x: int) -> float:
            return math.log(n / x)
    else:
        raise ValueError(f"unsupported bm25_method {method!r}")
    # math.log per distinct df, as bm25s computes it (numpy's log may differ in the last bit)
    values, where = np.unique(df[live].astype(np.int64), return_inverse=True)
    idf32 = np.zeros(df.size, dtype=np.float32)
    idf32[live] = np.array([inner(int(x)) for x in values], dtype=np.float64)[where].astype(np.float32)
    avgdl = np.float64(p.doc_len.sum()) / n if n else np.float64(1.0)
    norm = k1 * ((1 - b) + b * p.doc_len.astype(np.float64) / avgdl)
    tf64 = p.tf.astype(np.float64)
    tfc = norm[p.docs]
    tfc += tf64  # the same sums and quotients as bm25s, in place
    if method == "atire":
        np.divide((p.tf.astype(np.float32) * np.float32(k1 + 1)).astype(np.float64), tfc, out=tfc)
    else:
        np.divide(tf64, tfc, out=tfc)
    tfc *= np.repeat(idf32.astype(np.float64), np.diff(p.indptr))
    return tfc.astype(np.float32), df


class SegmentSet:
    """What a loaded index holds of its segments: the segments in chunk order, where each
    starts (``starts``), the merged ``postings`` and their BM25 ``data`` (float32 per posting)
    and ``df`` (per term) under ``k1``, ``b``, ``method``."""

    def __init__(self, segments: list[Segment], postings: Postings, k1: float, b: float, method: str) -> None:
        self.segments = segments
        self.starts = np.array([start for _, start in postings.layout], dtype=np.int64)
        self.postings = postings
        self.params = (k1, b, method)
        self.data, self.df = bm25_scores(postings, k1, b, method)

    @classmethod
    def of(cls, segments: list[Segment], k1: float, b: float, method: str, previous: "SegmentSet | None" = None
           ) -> "SegmentSet":
        """The set of ``segments``; merged from ``previous`` (a version of the same chain) when given."""
        postings = Postings.build(segments) if previous is None else previous.postings.updated(segments)
        return cls(segments, postings, k1, b, method)

    def live_vocab(self) -> dict[str, int]:
        """Term -> id of the terms that have postings: a version made by ``Postings.updated``
        keeps the ids of vanished terms, which must be as absent as in an index built from
        scratch (a plain dict: the feature stage looks terms up by the thousand)."""
        dead = np.flatnonzero(self.df == 0)
        if dead.size == 0:
            return self.postings.vocab  # never changed once built: shared
        vocab = dict(self.postings.vocab)
        for i in dead.tolist():
            del vocab[self.postings.terms[i]]
        return vocab

    def by_id(self) -> dict[str, Segment]:
        return {s.id: s for s in self.segments}

    def terms_of(self, i: int) -> list[str]:
        """Analysed terms of chunk ``i`` in text order."""
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.segments[k].terms_of(i - int(self.starts[k]))

    def term_ids_of(self, i: int) -> np.ndarray:
        """Global vocabulary ids (``postings.vocab``) of chunk ``i``'s terms in text order (int32)."""
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        seg = self.segments[k]
        j = i - int(self.starts[k])
        g = self.postings._gmaps[seg.id]
        return g[seg.tokens[seg.tok_ptr[j]:seg.tok_ptr[j + 1]]].astype(np.int32)
