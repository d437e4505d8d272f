"""Simulated known-item queries: a query set from documents alone, no judgements, no model.

Each generated query is written for one *target* document and judged relevant to it
alone (a qrel of grade 1). The term-sampling methods follow the known-item simulation
of Azzopardi, de Rijke and Balog ("Building simulated queries for known-item topics",
SIGIR 2007): pick a target document, pick a query length, then draw each term from a
mixture of the document's language model and the collection's,

    p(t | query) = (1 - noise) * p(t | d) + noise * p(t | collection),

where ``p(t | d)`` is one of the paper's term-selection models:

=================  ============================================================
``popular``        p(t|d) proportional to the term's frequency in d
``discriminative`` p(t|d) proportional to 1 / p(t|collection) over d's terms
``tfidf``          proportional to tf(t, d) * log((N + 1) / df(t))
``random``         uniform over d's distinct terms
``title``          the document's title (first ``max_words`` words)
``first_sentence`` the first sentence of the document's text (first ``max_words`` words)
=================  ============================================================

Terms are lower-cased word tokens with at least one letter, English stop words
removed; a query holds distinct terms in the order drawn. Everything is seeded:
the same documents and :class:`SimulationConfig` give the same query set, query
``i`` depends only on the seed and ``i`` (asking for more queries extends the set),
and the parameters are kept in the result's ``manifest``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llamaeval._errors import ConfigurationError, QuerySetError
from llamaeval.datasets._queryset import QuerySet, QuerySetWarning
from llamaeval.datasets._sources import documents

METHODS: tuple[str, ...] = ("popular", "discriminative", "tfidf", "random", "title", "first_sentence")
_SAMPLED = ("popular", "discriminative", "tfidf", "random")
GENERATOR = "known-item simulation (Azzopardi, de Rijke & Balog, SIGIR 2007)"
MANIFEST_FILE = "simulation.json"

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")

#: English stop words removed before sampling (a short, classic list).
STOPWORDS: frozenset[str] = frozenset("""
a about above after again against all also am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each either etc few for from further had hadn't has hasn't have haven't having he her here hers
herself him himself his how however i if in into is isn't it it's its itself just let's may me might
more most must mustn't my myself no nor not now of off on once only or other ought our ours ourselves
out over own same shall shan't she should shouldn't so some such than that that's the their theirs them
themselves then there there's these they this those through thus to too under until up upon us very was
wasn't we were weren't what when where whether which while who whom why will with within without won't
would wouldn't yet you your yours yourself yourselves
""".split())


@dataclass(frozen=True)
class SimulationConfig:
    """How many queries to generate, and how.

    Attributes:
        n_queries: queries to generate.
        methods: term-selection methods (see the module docstring), used in turn:
            query ``i`` uses ``methods[i % len(methods)]``.
        noise: the share of each query's terms drawn from the collection model
            instead of the target document (the paper's lambda; 0 = none).
        length_mean: mean of the Poisson law of a sampled query's length in terms ...
        min_length, max_length: ... clipped to this range.
        min_doc_terms: a document needs this many distinct terms to be a target of the
            sampled methods (shorter ones give degenerate queries).
        max_words: title and first-sentence queries keep at most this many words.
        seed: the seed of every random choice.
    """

    n_queries: int = 100
    methods: tuple[str, ...] = ("popular", "discriminative")
    noise: float = 0.2
    length_mean: float = 3.0
    min_length: int = 2
    max_length: int = 6
    min_doc_terms: int = 8
    max_words: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        object.__setattr__(self, "methods", methods)
        if not methods:
            raise ConfigurationError(f"methods must name at least one of {', '.join(METHODS)}")
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ConfigurationError(f"unknown simulation method(s) {unknown}; choose from {', '.join(METHODS)}")
        for name, lo in (("n_queries", 1), ("min_length", 1), ("max_length", 1), ("min_doc_terms", 1),
                         ("max_words", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ConfigurationError(f"{name} must be an int >= {lo}, got {value!r}")
        if self.max_length < self.min_length:
            raise ConfigurationError(f"max_length ({self.max_length}) is below min_length ({self.min_length})")
        if not isinstance(self.noise, (int, float)) or isinstance(self.noise, bool) or not 0 <= self.noise < 1:
            raise ConfigurationError(f"noise must be a number in [0, 1), got {self.noise!r}")
        if not isinstance(self.length_mean, (int, float)) or not math.isfinite(self.length_mean) \
                or self.length_mean <= 0:
            raise ConfigurationError(f"length_mean must be a positive number, got {self.length_mean!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigurationError(f"seed must be an int, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view, as recorded in the manifest."""
        out = asdict(self)
        out["methods"] = list(self.methods)
        return out


class SimulatedQuerySet(QuerySet):
    """A :class:`~llamaeval.QuerySet` of generated known-item queries.

    Besides ``queries``, ``qrels`` (each query's target, grade 1) and ``corpus`` (the
    documents it was generated from), it holds

    - ``manifest``: the generator, its parameters (:class:`SimulationConfig`), the
      source documents' name, count and content hash, queries per method;
    - ``details``: one row per query: ``query_id``, ``doc_id`` (the target), ``method``,
      ``length`` (terms), ``n_noise`` (terms drawn from the collection model).

    ``save(folder)`` writes a BEIR folder that :func:`~llamaeval.load_queryset` reads,
    plus ``simulation.json`` (manifest and details) that :meth:`load` reads back too.
    """

    def __init__(self, name: str, queries: pd.DataFrame, qrels: pd.DataFrame, corpus: pd.DataFrame | None,
                 *, manifest: Mapping[str, Any], details: pd.DataFrame, split: str = "test") -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QuerySetWarning)  # empty documents: the source already warned
            super().__init__(name, queries, qrels, corpus, split)
        self.manifest: dict[str, Any] = dict(manifest)
        self.details = details.reset_index(drop=True)

    def save(self, folder: str | Path, *, compress: bool = False) -> Path:
        """Write the query set as a BEIR folder plus ``simulation.json``; returns the folder."""
        from llamaeval.datasets._formats import write_beir

        root = write_beir(self, folder, compress=compress)
        payload = {"manifest": self.manifest, "queries": self.details.to_dict(orient="records")}
        (root / MANIFEST_FILE).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", "utf-8")
        return root

    @classmethod
    def load(cls, folder: str | Path) -> SimulatedQuerySet:
        """Read a folder written by :meth:`save` (the query set and its ``simulation.json``)."""
        from llamaeval.datasets._formats import load_folder

        root = Path(folder)
        path = root / MANIFEST_FILE
        if not path.is_file():
            raise QuerySetError(f"{root}: no {MANIFEST_FILE}; not a simulated query set (load_queryset reads it "
                                "as a plain query set)")
        payload = json.loads(path.read_text("utf-8"))
        plain = load_folder(root, payload["manifest"].get("split", "test"))
        details = pd.DataFrame(payload["queries"], columns=list(_DETAIL_COLUMNS))
        details = details.astype({"query_id": str, "doc_id": str, "method": str})
        return cls(plain.name, plain.queries, plain.qrels, plain.corpus, manifest=payload["manifest"],
                   details=details, split=plain.split)

    def __repr__(self) -> str:
        methods = ", ".join(f"{m} {n}" for m, n in self.manifest.get("methods", {}).items())
        return (f"SimulatedQuerySet({self.name!r}: {len(self.queries)} known-item queries ({methods}) "
                f"over {0 if self.corpus is None else len(self.corpus)} docs, seed "
                f"{self.manifest.get('config', {}).get('seed')})")


_DETAIL_COLUMNS = ("query_id", "doc_id", "method", "length", "n_noise")


# ---------------------------------------------------------------------------- documents
def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens with at least one letter, stop words removed."""
    return [t for t in _TOKEN.findall(text.lower())
            if t not in STOPWORDS and any(c.isalpha() for c in t) and len(t) > 1]


def _corpus_hash(corpus: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for row in sorted("\x1f".join(r) for r in corpus[["doc_id", "title", "text"]].itertuples(index=False)):
        digest.update(row.encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()


# ---------------------------------------------------------------------------- the models
class _Collection:
    """Term statistics of the documents: vocabulary, collection model, per-document counts."""

    def __init__(self, corpus: pd.DataFrame) -> None:
        self.counts = [Counter(tokenize(f"{t} {x}")) for t, x in zip(corpus["title"], corpus["text"])]
        cf: Counter[str] = Counter()
        df: Counter[str] = Counter()
        for c in self.counts:
            cf.update(c)
            df.update(c.keys())
        self.vocab = sorted(cf)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        total = sum(cf.values())
        self.p_collection = np.array([cf[t] for t in self.vocab], float) / max(total, 1)
        self.df = np.array([df[t] for t in self.vocab], float)
        self.n_docs = len(self.counts)

    def doc_model(self, i: int, method: str) -> tuple[np.ndarray, np.ndarray]:
        """(term indices, probabilities) of document ``i`` under a term-selection method."""
        counts = self.counts[i]
        terms = sorted(counts)
        idx = np.array([self.index[t] for t in terms], dtype=np.int64)
        tf = np.array([counts[t] for t in terms], float)
        if method == "popular":
            weights = tf
        elif method == "discriminative":
            weights = 1.0 / self.p_collection[idx]
        elif method == "tfidf":
            weights = tf * np.log((self.n_docs + 1) / self.df[idx])
        else:  # random
            weights = np.ones(len(terms))
        if weights.sum() <= 0:
            weights = np.ones(len(terms))
        return idx, weights / weights.sum()


def _draw(rng: np.random.Generator, idx: np.ndarray, probs: np.ndarray, taken: set[int]) -> int | None:
    """One term index from (idx, probs) excluding ``taken``, or None when nothing is left."""
    mask = np.array([i not in taken for i in idx.tolist()]) if taken else np.ones(len(idx), bool)
    if not mask.any():
        return None
    p = probs[mask]
    total = p.sum()
    if total <= 0:
        return None
    return int(idx[mask][rng.choice(int(mask.sum()), p=p / total)])


def _draw_collection(rng: np.random.Generator, coll: _Collection, taken: set[int], tries: int = 50) -> int | None:
    """One term from the collection model, not already taken (rejection sampling; None if unlucky)."""
    for _ in range(tries):
        term = int(rng.choice(len(coll.vocab), p=coll.p_collection))
        if term not in taken:
            return term
    return None


def _first_sentence(text: str) -> str:
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0] if text.strip() else ""


def _cut(text: str, max_words: int) -> str:
    return " ".join(text.split()[:max_words])


def simulate_queries(source: Any, config: SimulationConfig | None = None, *,
                     name: str | None = None) -> SimulatedQuerySet:
    """Generate known-item queries from documents; each query's target is its one relevant document.

    ``source``: a :class:`~llamaeval.QuerySet` (its corpus; its queries and judgements are
    ignored), a DataFrame (``doc_id``, optional ``title``, ``text``), a folder of text files
    (:func:`read_folder`), a bundled collection's name, or the frame
    :func:`pipeline_documents` reads from a pipeline. ``config`` sets the size, methods,
    noise, lengths and seed (:class:`SimulationConfig`).

    Returns a :class:`SimulatedQuerySet` named ``<source>-simulated`` (or ``name``) whose
    corpus is the source documents, so it benchmarks, ingests and saves like any query set.
    """
    cfg = config if config is not None else SimulationConfig()
    if not isinstance(cfg, SimulationConfig):
        raise ConfigurationError(f"config must be a SimulationConfig, got {type(cfg).__name__}")
    source_name, corpus = documents(source)
    coll = _Collection(corpus)
    n_terms = np.array([len(c) for c in coll.counts])
    eligible: dict[str, np.ndarray] = {}
    reasons: dict[str, str] = {}
    for method in dict.fromkeys(cfg.methods):
        if method in _SAMPLED:
            ok = n_terms >= cfg.min_doc_terms
            reasons[method] = f"every document has fewer than {cfg.min_doc_terms} distinct terms"
        elif method == "title":
            ok = np.array([len(tokenize(t)) > 0 for t in corpus["title"]], bool)
            reasons[method] = "no document has a title"
        else:
            ok = np.array([len(_first_sentence(x).split()) >= 3 and len(tokenize(_first_sentence(x))) > 0
                           for x in corpus["text"]], bool)
            reasons[method] = "no document text has a first sentence"
        candidates = np.flatnonzero(ok)
        if len(candidates):
            salt = int.from_bytes(hashlib.sha256(method.encode()).digest()[:4], "big")
            eligible[method] = np.random.default_rng([cfg.seed, salt]).permutation(candidates)
    methods = [m for m in cfg.methods if m in eligible]
    dropped = [m for m in dict.fromkeys(cfg.methods) if m not in eligible]
    if not methods:
        raise QuerySetError("no document can be a target: " + "; ".join(f"{m}: {reasons[m]}" for m in dropped))
    if dropped:
        warnings.warn("simulate_queries: method(s) dropped, " + "; ".join(f"{m}: {reasons[m]}" for m in dropped)
                      + f"; the queries use {', '.join(dict.fromkeys(methods))}", QuerySetWarning, stacklevel=2)

    rows, used = [], Counter()
    for i in range(cfg.n_queries):
        method = methods[i % len(methods)]
        order = eligible[method]
        doc = int(order[used[method] % len(order)])
        used[method] += 1
        rng = np.random.default_rng([cfg.seed, i])
        if method == "title":
            text, n_noise = _cut(corpus["title"].iat[doc], cfg.max_words), 0
        elif method == "first_sentence":
            text, n_noise = _cut(_first_sentence(corpus["text"].iat[doc]), cfg.max_words), 0
        else:
            text, n_noise = _sample_terms(rng, coll, doc, method, cfg)
        rows.append((f"sim-{i + 1:04d}", text, corpus["doc_id"].iat[doc], method, len(text.split()), n_noise))

    frame = pd.DataFrame(rows, columns=["query_id", "text", *(_DETAIL_COLUMNS[1:])])
    queries = frame[["query_id", "text"]]
    qrels = pd.DataFrame({"query_id": frame["query_id"], "doc_id": frame["doc_id"], "relevance": 1})
    qs_name = name or f"{source_name}-simulated"
    manifest = {
        "generator": GENERATOR,
        "function": "llamaeval.datasets.simulate_queries",
        "config": cfg.to_dict(),
        "source": {"name": source_name, "n_documents": int(len(corpus)), "content_hash": _corpus_hash(corpus)},
        "eligible_documents": {m: int(len(v)) for m, v in eligible.items()},
        "dropped_methods": dropped,
        "methods": {m: int(n) for m, n in Counter(frame["method"]).items()},
        "n_queries": int(len(frame)),
        "split": "test",
        "stopwords": "llamaeval.datasets._simulate.STOPWORDS (English)",
    }
    return SimulatedQuerySet(qs_name, queries, qrels, corpus, manifest=manifest,
                             details=frame[list(_DETAIL_COLUMNS)])


def _sample_terms(rng: np.random.Generator, coll: _Collection, doc: int, method: str,
                  cfg: SimulationConfig) -> tuple[str, int]:
    idx, probs = coll.doc_model(doc, method)
    length = int(np.clip(rng.poisson(cfg.length_mean), cfg.min_length, cfg.max_length))
    taken: list[int] = []
    n_noise = 0
    for _ in range(length):
        from_collection = cfg.noise > 0 and rng.random() < cfg.noise
        term = _draw_collection(rng, coll, set(taken)) if from_collection else None
        if term is None:
            term = _draw(rng, idx, probs, set(taken))
            from_collection = False
        if term is None:
            break
        n_noise += int(from_collection)
        taken.append(term)
    return " ".join(coll.vocab[t] for t in taken), n_noise


__all__ = ["METHODS", "STOPWORDS", "SimulatedQuerySet", "SimulationConfig", "simulate_queries", "tokenize"]
