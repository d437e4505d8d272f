"""Which embedding models exist, by name, and one embedder per model for a process.

The one place that knows the models: ``EMBEDDING_MODELS`` (canonical name -> what it is),
``EMBEDDING_ALIASES`` (other names a client may send, e.g. the Hugging Face id),
:func:`embedding_model_name` (a name or alias -> the canonical name, ConfigurationError naming
the allowed ones otherwise), :func:`embedder_for` (a new embedder of a model) and
:class:`Embedders` (a server's embedders: the default one, plus one per other model created on
first use).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from llamaeval._errors import ConfigurationError
from llamaeval.engine._embed import DEFAULT_MODEL_NAME
from llamaeval.engine._static_embed import FAST_EMBED_EXTRA, WORDLLAMA_MODEL_NAME

__all__ = ["EMBEDDING_MODELS", "EMBEDDING_ALIASES", "embedding_model_name", "embedder_for", "Embedders",
           "embedder_of"]

#: Canonical model name -> one line on what it is (its dimensions, what it needs, its speed).
EMBEDDING_MODELS: dict[str, str] = {
    DEFAULT_MODEL_NAME: "all-MiniLM-L6-v2, int8 ONNX, 384 dimensions (the default; the 'server' extra)",
    WORDLLAMA_MODEL_NAME: (f"WordLlama l2_supercat static embeddings, 256 dimensions, much faster on CPU and "
                           f"less accurate (the '{FAST_EMBED_EXTRA}' extra: pip install "
                           f"'llamaeval[{FAST_EMBED_EXTRA}]')"),
}

#: Other names accepted for the models (case-insensitive), e.g. as a LlamaCloud client names them.
EMBEDDING_ALIASES: dict[str, str] = {
    "sentence-transformers/all-minilm-l6-v2": DEFAULT_MODEL_NAME,
    "all-minilm-l6-v2": DEFAULT_MODEL_NAME,
    "minilm": DEFAULT_MODEL_NAME,
    "wordllama": WORDLLAMA_MODEL_NAME,
    "wordllama-l2-supercat": WORDLLAMA_MODEL_NAME,
    "dleemiller/word-llama-l2-supercat": WORDLLAMA_MODEL_NAME,
}


def embedding_model_name(name: Any) -> str:
    """The canonical name of the model ``name`` names (a canonical name or an alias, any case);
    ConfigurationError naming the allowed models otherwise."""
    if isinstance(name, str):
        key = name.strip()
        if key in EMBEDDING_MODELS:
            return key
        for canonical in EMBEDDING_MODELS:
            if canonical.lower() == key.lower():
                return canonical
        if key.lower() in EMBEDDING_ALIASES:
            return EMBEDDING_ALIASES[key.lower()]
    allowed = ", ".join(repr(n) for n in EMBEDDING_MODELS)
    raise ConfigurationError(f"unknown embedding model {name!r}; this server embeds with one of: {allowed}")


def embedder_for(model_name: str, *, num_threads: int | None = None) -> Any:
    """A new embedder of the model ``model_name`` (a name or alias); ``num_threads``: the ONNX
    threads of MiniLM (the static model runs on one). ConfigurationError for an unknown model;
    a model whose package is missing raises when it first loads, naming the extra to install."""
    name = embedding_model_name(model_name)
    if name == WORDLLAMA_MODEL_NAME:
        from llamaeval.engine._static_embed import StaticEmbedder

        return StaticEmbedder()
    from llamaeval.engine._embed import Embedder

    return Embedder(num_threads=num_threads)


class Embedders:
    """A server's embedders: ``default`` (given, or MiniLM) and one per other model, created on
    first use by ``make`` (default :func:`embedder_for`) and kept; thread-safe.

    It stands in for its default embedder (attributes it does not have itself — ``model_name``,
    ``dimensions``, ``token_offsets``, ``embed_query`` ... — are the default's), so code written
    for one embedder keeps working; :func:`embedder_of` picks a pipeline's.
    """

    def __init__(self, default: Any = None, *, num_threads: int | None = None,
                 make: Callable[..., Any] = embedder_for) -> None:
        if isinstance(default, Embedders):
            default = default.default
        self.default = default if default is not None else make(DEFAULT_MODEL_NAME, num_threads=num_threads)
        self._num_threads = num_threads
        self._make = make
        self._lock = threading.Lock()
        self._by_name: dict[str, Any] = {self.default.model_name: self.default}

    def get(self, model_name: str) -> Any:
        """The embedder of ``model_name`` (a name or alias); created on first use. An embedder
        whose package is missing is checked here (ConfigurationError naming the extra)."""
        if model_name in self._by_name:
            return self._by_name[model_name]
        name = embedding_model_name(model_name)
        with self._lock:
            if name not in self._by_name:
                embedder = self._make(name, num_threads=self._num_threads)
                check = getattr(embedder, "check_available", None)
                if callable(check):
                    check()  # a missing package fails now, by name, not at the first embedding
                self._by_name[name] = embedder
            return self._by_name[name]

    def check(self, model_name: str) -> str:
        """The canonical name of ``model_name`` after making sure this process can embed with it
        (ConfigurationError naming the allowed models, or the extra to install)."""
        return self.get(model_name).model_name

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("default", "_by_name", "_make", "_lock", "_num_threads"):
            raise AttributeError(name)
        return getattr(self.default, name)

    def __repr__(self) -> str:
        return f"Embedders(default={self.default!r}, loaded={sorted(self._by_name)})"


def embedder_of(embedder: Any, model_name: str | None) -> Any:
    """The embedder of ``model_name`` from ``embedder`` — an :class:`Embedders`, or one embedder
    that serves only its own model (ConfigurationError for another); None: the default."""
    if isinstance(embedder, Embedders):
        return embedder.default if model_name is None else embedder.get(model_name)
    if model_name is None or model_name == embedder.model_name:
        return embedder
    if embedding_model_name(model_name) == embedder.model_name:
        return embedder
    raise ConfigurationError(f"embedding model {model_name!r} is not available here: this server embeds only with "
                             f"{embedder.model_name!r}")
