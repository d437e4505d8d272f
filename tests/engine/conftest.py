"""Engine fixtures: one embedder and one small index (the adi collection) per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamaeval.engine import (
    ChunkingConfig, Embedder, IndexEntry, ParsedDocument, RetrievalConfig, build_index, chunk_document,
)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


def read_adi(shared: Path) -> tuple[list[dict], dict[str, str], dict[str, set[str]]]:
    """(corpus records, query id -> text, query id -> relevant doc ids) of adi."""
    folder = shared / "adi"
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").read_text("utf-8").splitlines() if line]
    queries = {str(q["_id"]): q["text"] for q in map(json.loads, (folder / "queries.jsonl").read_text("utf-8").splitlines()) if q}
    qrels: dict[str, set[str]] = {}
    for line in (folder / "qrels" / "test.tsv").read_text("utf-8").splitlines()[1:]:
        q, d, s = line.split("\t")
        if int(s) > 0:
            qrels.setdefault(q, set()).add(d)
    return corpus, queries, qrels


def adi_entries(corpus: list[dict], embedder: Embedder, chunking: ChunkingConfig) -> list[IndexEntry]:
    entries = []
    for doc in corpus:
        title = doc["title"].strip()
        parsed = ParsedDocument(text=f"{title}\n\n{doc['text']}".strip(), title=title or None)
        for c in chunk_document(parsed, chunking, embedder):
            entries.append(IndexEntry(
                chunk_id=f"{doc['_id']}#{c.chunk_index}", file_id=f"f{doc['_id']}", file_name=f"{doc['_id']}.txt",
                chunk_index=c.chunk_index, start_char=c.start_char, end_char=c.end_char, text=c.text,
                title=title or None, metadata={"doc_id": str(doc["_id"])},
            ))
    return entries


@pytest.fixture(scope="session")
def adi(shared_datasets: Path, embedder: Embedder):
    """adi chunked small (64/16 tokens, so documents have several chunks), embedded once."""
    corpus, queries, qrels = read_adi(shared_datasets)
    entries = adi_entries(corpus, embedder, ChunkingConfig(chunk_size=64, chunk_overlap=16))
    embeddings = embedder.embed_passages([e.text for e in entries])
    return {"entries": entries, "embeddings": embeddings, "queries": queries, "qrels": qrels}


@pytest.fixture(scope="session")
def adi_index_dir(adi, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("adi-index")
    build_index(adi["entries"], adi["embeddings"], RetrievalConfig(), directory)
    return directory
