"""Token-aware chunking with overlap, keeping character offsets into the parsed text."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from llamaeval.engine._parse import ParsedDocument

__all__ = ["Chunk", "ChunkingConfig", "chunk_document"]

MAX_CHUNK_SIZE = 512  # word pieces; MiniLM's position limit


class _Tokenizing(Protocol):
    def token_offsets(self, text: str) -> list[tuple[int, int]]: ...


@dataclass
class ChunkingConfig:
    """How documents are cut: ``chunk_size`` and ``chunk_overlap`` in MiniLM word pieces.

    chunk_size: 16..512 (default 256, the embedder's passage window);
    chunk_overlap: 0..chunk_size/2 (default 32) word pieces shared by neighbours.
    """

    chunk_size: int = 256
    chunk_overlap: int = 32

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"chunking_config.{f.name} must be an integer, got {value!r}")
        if not 16 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunking_config.chunk_size must be in 16..{MAX_CHUNK_SIZE}, got {self.chunk_size}")
        if not 0 <= self.chunk_overlap <= self.chunk_size // 2:
            raise ValueError(
                f"chunking_config.chunk_overlap must be in 0..chunk_size/2 ({self.chunk_size // 2}), "
                f"got {self.chunk_overlap}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ChunkingConfig":
        """Build from a (partial) dict; ValueError names an unknown key or a bad value."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown chunking_config key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**d)


@dataclass
class Chunk:
    """One piece of a document: ``text == document.text[start_char:end_char]``."""

    text: str
    chunk_index: int
    start_char: int
    end_char: int


def chunk_document(doc: ParsedDocument, config: ChunkingConfig, embedder: _Tokenizing) -> list[Chunk]:
    """Cut ``doc.text`` into windows of ``config.chunk_size`` word pieces that overlap by
    ``config.chunk_overlap``; a window's text is the exact character span its tokens cover,
    extended to the start of the next window's first token (so whitespace is kept)."""
    text = doc.text
    if not text.strip():
        return []
    offsets = embedder.token_offsets(text)
    if not offsets:
        return [Chunk(text=text, chunk_index=0, start_char=0, end_char=len(text))]
    n = len(offsets)
    # boundary[i]: token i starts a new word (whitespace before it); windows snap to these
    # so that words are not split, unless a window holds no boundary at all.
    boundary = [i == 0 or offsets[i][0] > offsets[i - 1][1] for i in range(n)]
    size, overlap = config.chunk_size, config.chunk_overlap
    chunks: list[Chunk] = []
    pos = 0
    while True:
        end = min(pos + size, n)
        if end < n:
            snapped = next((e for e in range(end, pos + size // 2, -1) if boundary[e]), None)
            end = snapped if snapped is not None else end
        start_char = 0 if pos == 0 else offsets[pos][0]
        end_char = len(text) if end == n else offsets[end - 1][1]
        piece = text[start_char:end_char]
        start_char += len(piece) - len(piece.lstrip())
        end_char -= len(piece) - len(piece.rstrip())
        chunks.append(Chunk(text=text[start_char:end_char], chunk_index=len(chunks),
                            start_char=start_char, end_char=end_char))
        if end >= n:
            break
        nxt = end - overlap
        snapped = next((b for b in range(nxt, max(pos + 1, nxt - overlap) - 1, -1) if boundary[b]), None)
        pos = max(snapped if snapped is not None else nxt, pos + 1)
    return chunks
