"""A static (word-vector) sentence embedder: WordLlama l2_supercat, 256 dimensions.

A static model has no transformer: a text's vector is the mean of its tokens' vectors
(one table lookup per token), L2-normalised. That makes it one to two orders of magnitude
faster than MiniLM on a CPU, at a cost in relevance that ``benchmarks/results/embedders.md``
measures on every bundled collection.

The weights (``l2_supercat_256.safetensors``, float16, 32,000 x 256) and the Llama-2 tokenizer
ship inside the ``wordllama`` wheel (the ``fast-embed`` extra: ``pip install 'llamaeval[fast-embed]'``).
They are read straight from the installed package: ``WordLlama.load()`` itself looks for the
tokenizer under a folder the wheel does not have and would download it, and importing
``wordllama`` configures the root logger — neither happens here (the package is located
with ``importlib.util.find_spec``, never imported).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from llamaeval._errors import ConfigurationError
from llamaeval.engine._embed import _text_list, files_version, gather_passages

__all__ = ["StaticEmbedder", "WORDLLAMA_MODEL_NAME", "FAST_EMBED_EXTRA"]

#: The model's name in llamaeval (pipelines, index manifests, the embedding cache's keys).
WORDLLAMA_MODEL_NAME = "wordllama-l2-supercat-256"
#: The extra that installs the package carrying the weights.
FAST_EMBED_EXTRA = "fast-embed"
_PACKAGE = "wordllama"
_WEIGHTS = ("weights", "l2_supercat_256.safetensors")
_TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")
_TENSOR = "embedding.weight"
_PIECE_TEXTS = 512  # texts tokenized and pooled at once


def _package_dir() -> Path:
    """The installed ``wordllama`` package's folder (not imported); ConfigurationError naming the
    extra when it is not installed."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"embedding model {WORDLLAMA_MODEL_NAME!r} needs the '{_PACKAGE}' package: "
            f"pip install 'llamaeval[{FAST_EMBED_EXTRA}]'")
    return Path(list(spec.submodule_search_locations)[0])


class StaticEmbedder:
    """WordLlama l2_supercat sentence embeddings (256 dimensions), loaded on first use; thread-safe.

    The same interface as :class:`~llamaeval.engine.Embedder` (``embed_query``,
    ``embed_passages``, ``iter_passage_batches``, ``dimensions``, ``model_name``, ``version``,
    ``load``, ``stats``): a text's vector is the mean of its Llama-2 tokens' vectors (no special
    tokens, no truncation: a chunk is at most a few hundred tokens), L2-normalised; a text
    without any token gets the zero vector. Pooling is one sparse (texts x vocabulary) times
    (vocabulary x 256) product per ``batch_texts`` texts, so memory stays at the 33 MB float32
    table plus one batch.
    """

    model_name: str = WORDLLAMA_MODEL_NAME
    dimensions: int = 256

    def __init__(self, *, package_dir: Path | None = None, batch_texts: int = _PIECE_TEXTS) -> None:
        if isinstance(batch_texts, bool) or not isinstance(batch_texts, int) or batch_texts < 1:
            raise ValueError(f"batch_texts must be a positive int, got {batch_texts!r}")
        self._package_dir = Path(package_dir) if package_dir else None
        self.batch_texts = batch_texts
        self._lock = threading.Lock()
        self._table: np.ndarray | None = None
        self._tokenizer: Any = None
        self._version: str | None = None
        self._counts = {"passages": 0, "calls": 0, "real_tokens": 0, "fed_tokens": 0}

    # -- files and lazy loading ---------------------------------------------------------
    def _paths(self) -> tuple[Path, Path]:
        root = self._package_dir or _package_dir()
        weights, tokenizer = root.joinpath(*_WEIGHTS), root.joinpath(*_TOKENIZER)
        for path in (weights, tokenizer):
            if not path.is_file():
                raise ConfigurationError(
                    f"embedding model {WORDLLAMA_MODEL_NAME!r}: the installed '{_PACKAGE}' package has no "
                    f"{'/'.join(path.relative_to(root).parts)}; reinstall it: pip install 'llamaeval[{FAST_EMBED_EXTRA}]'")
        return weights, tokenizer

    def check_available(self) -> None:
        """ConfigurationError naming the extra to install when the weights or the tokenizer are not
        installed (cheap: reads nothing)."""
        self._paths()

    def load(self) -> "StaticEmbedder":
        """Read the vector table and the tokenizer now instead of on first use (~0.3 s)."""
        if self._table is None:
            with self._lock:
                if self._table is None:
                    from safetensors import safe_open
                    from tokenizers import Tokenizer

                    weights, tokenizer_path = self._paths()
                    with safe_open(str(weights), framework="np", device="cpu") as fh:
                        table = np.ascontiguousarray(fh.get_tensor(_TENSOR), dtype=np.float32)
                    if table.ndim != 2 or table.shape[1] != self.dimensions:
                        raise ConfigurationError(f"{weights.name}: expected a (vocabulary, {self.dimensions}) table, "
                                                 f"got {table.shape}")
                    tok = Tokenizer.from_file(str(tokenizer_path))
                    tok.no_truncation()
                    tok.no_padding()
                    self._tokenizer = tok
                    self._table = table
        return self

    def _table_loaded(self) -> np.ndarray:
        if self._table is None:  # pragma: no cover - load() sets it or raises
            raise RuntimeError("the vector table is not loaded")
        return self._table

    @property
    def tokenizer(self) -> Any:
        """The raw ``tokenizers.Tokenizer`` (Llama-2 vocabulary), truncation and padding disabled."""
        self.load()
        return self._tokenizer

    @property
    def version(self) -> str:
        """SHA-256 (first 16 hex digits) of the weight and tokenizer files (part of every
        embedding-cache key, with ``model_name``)."""
        if self._version is None:
            self._version = files_version(self._paths())
        return self._version

    # -- tokens -----------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Number of Llama-2 tokens in ``text``."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) offsets of every token of ``text``."""
        return [tuple(o) for o in self.tokenizer.encode(text, add_special_tokens=False).offsets]

    # -- embeddings ---------------------------------------------------------------------------
    def _pool(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Mean token vector of each text, L2-normalised: (len(texts), 256) float32; and the tokens seen."""
        from scipy import sparse

        table = self.load()._table_loaded()
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int64, count=int(lengths.sum()))
        np.clip(ids, 0, table.shape[0] - 1, out=ids)
        indptr = np.concatenate(([0], np.cumsum(lengths)))
        weights = np.repeat(1.0 / np.maximum(lengths, 1), lengths).astype(np.float32)
        mean = sparse.csr_matrix((weights, ids, indptr), shape=(len(texts), table.shape[0])) @ table
        mean = np.asarray(mean, dtype=np.float32)
        norms = np.linalg.norm(mean, axis=1, keepdims=True)
        return (mean / np.maximum(norms, 1e-12)).astype(np.float32), int(lengths.sum())

    def iter_passage_batches(self, texts: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Embed passages ``batch_texts`` at a time, in order: yields (indices into ``texts``,
        their (len, 256) float32 L2-normalised vectors)."""
        texts = _text_list(texts)
        for start in range(0, len(texts), self.batch_texts):
            piece = texts[start:start + self.batch_texts]
            vectors, tokens = self._pool(piece)
            with self._lock:
                self._counts["passages"] += len(piece)
                self._counts["calls"] += 1
                self._counts["real_tokens"] += tokens
                self._counts["fed_tokens"] += tokens  # no padding: every token is looked up once
            yield np.arange(start, start + len(piece)), vectors

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Embed passages: (n, 256) float32, rows L2-normalised."""
        return gather_passages(self, texts)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query: (256,) float32, L2-normalised."""
        if not isinstance(text, str):
            raise TypeError("embed_query takes a string")
        return self._pool([text])[0][0]

    def stats(self) -> dict[str, int]:
        """Passages embedded so far, pooling calls, and the tokens they held (``fed_tokens`` equals
        ``real_tokens``: nothing is padded)."""
        with self._lock:
            return dict(self._counts)

    def __repr__(self) -> str:
        return f"StaticEmbedder(model_name={self.model_name!r}, dimensions={self.dimensions})"

