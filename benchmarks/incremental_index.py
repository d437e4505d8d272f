"""One-file syncs against a full rebuild on a ~50k-chunk pipeline, through the real sync code (issue 17).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/incremental_index.py [--chunks 50000] [--repeats 3]
        [--out benchmarks/results/incremental_index.md]

What runs: ``SyncService`` jobs over SQLite in a temporary data dir, in this thread (as the
server's worker runs them): the pipeline's text documents (``Services.upsert_documents``,
the documents API) are parsed and chunked with MiniLM's tokenizer, indexed, swapped in and
loaded warm. Text is real: the bundled collections (adi, med, cranfield, cisi, scifact),
``DOCS_PER_FILE`` documents per file, cycled until the pipeline holds ``--chunks`` chunks of
``CHUNK_SIZE`` word pieces. Vectors are NOT MiniLM's: a seeded generator gives random unit
vectors (384 dimensions), so no embedding time is measured — only what the index costs.

Timed, each ``--repeats`` times, alternating: a sync that adds one document, one that changes
one, one that removes one, and a full rebuild (one document changed after the previous
version's segments were deleted and the index cache emptied, so every file's chunks are read
back, analysed and written: the work every sync did before segments). Per job: seconds in
total and in ``_build_and_swap`` (index write, load, swap), segments written and linked.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llamaeval.engine import Embedder  # noqa: E402
from llamaeval.server import ServerConfig, SQLiteStorage  # noqa: E402
from llamaeval.server._config import DataLayout  # noqa: E402
from llamaeval.server._services import Services  # noqa: E402
from llamaeval.server._sync import IndexCache, SyncService  # noqa: E402

COLLECTIONS = ("adi", "med", "cranfield", "cisi", "scifact")
DOCS_PER_FILE = 12
CHUNK_SIZE = 64
CHUNK_OVERLAP = 8


BEFORE = ("Before index format 2 every sync did a full rebuild (re-read every file's chunks and vectors, "
          "re-analysed every chunk, rebuilt bm25s; issue 17 measured 0.13 ms per chunk of the pipeline on a quiet "
          "machine, ~6.5 s at 50k chunks). The full-rebuild row is that work in the new format, under this run's "
          "load; it is also what the first sync after an upgrade from format 1 costs, once.")

DESIGN = """## Design (index format 2, `llamaeval/engine/_segments.py`)

- **A version = a manifest + one segment per file.** A segment (`segments/<id>.seg`, one file:
  JSON header with the entries and the segment's sorted vocabulary, then raw arrays) holds a
  file's chunks, float32 vectors, each chunk's analysed term sequence and its BM25 postings
  (term -> chunk, term frequency) and lengths. Its id hashes what shaped it: the file id, the
  processed content key (content, chunking, embedding model), name, metadata and the analysis
  settings (stemmer, stopwords); scoring parameters (k1, b, method, fusion...) are not in it.
- **A sync writes only new segments.** `IndexWriter` hard-links (copy where links fail) every
  segment the previous version holds and writes the k new ones; the version directory is built
  aside and renamed into place, then the pipeline row points at it (the atomic swap as before).
  Unchanged files' chunks are not read back at all.
- **BM25 is not stored, only what it is computed from.** BM25 scores depend on the number of
  chunks, the average length and every term's document frequency, so one new chunk changes all
  of them. Each loaded version merges its segments' postings into one term-major list and
  computes the scores with bm25s' formulas and float types (idf float32, tf part float64,
  product float32): equal to a bm25s index of the same chunks for lucene, robertson and atire
  (`tests/engine/test_segments.py` checks against bm25s). The merge from the previous loaded
  version is linear numpy passes — drop the removed chunks' postings, renumber, append the new
  postings at the end of their terms (no sort); a cold load sorts once. Terms whose chunks are
  all gone keep their id with no postings (left out of the loaded vocabulary) until they are half the
  vocabulary, then the postings are rebuilt from scratch (the bounded merge).
- **In memory, version N+1 reuses version N's segments** (the same objects: entries, terms,
  vectors), so a load reads only the new segments; the vectors are concatenated once per version
  and the segments then point into that array (one copy in memory). Chunk terms come from the
  segments, so the feature stage no longer analyses chunk text at query time.
- **Chunk order is the pipeline's file order** (as before), so ties break as in a full build:
  rankings and scores of an incrementally built version equal a fresh build of the same files
  (`tests/server/test_server_incremental_index.py`).
- What still grows with the pipeline in a one-file sync: listing the pipeline's files and
  hashing its inputs fingerprint (per file, in SQL/Python), one hard link per unchanged file, the
  postings merge and BM25 recomputation (linear numpy over all postings), the vectors
  concatenation (N x 384 float32), and `Index()`'s per-chunk bookkeeping — all vectorised or
  per file, not per token, hence the small fraction of a full rebuild above.
- Format 1 indexes (bm25s, entries.jsonl, embeddings.npy) are still loaded; the first sync after
  an upgrade writes every segment (a full build, once).
"""


class RandomVectors:
    """MiniLM's tokenizer (the chunker needs it) with seeded random unit vectors for passages."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.rng = np.random.default_rng(17)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def iter_passage_batches(self, texts: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for lo in range(0, len(texts), 4096):
            hi = min(lo + 4096, len(texts))
            v = self.rng.standard_normal((hi - lo, int(self.inner.dimensions)), dtype=np.float32)
            yield np.arange(lo, hi), v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return np.concatenate([v for _, v in self.iter_passage_batches(texts)])


def documents() -> list[str]:
    """Real document texts of the bundled collections, in collection order."""
    from llamaeval import load_queryset
    from llamaeval.datasets._ingest import document_content

    texts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in COLLECTIONS:
            corpus = load_queryset(name).corpus
            texts += [document_content(t, x) for t, x in zip(corpus["title"], corpus["text"])]
    return [t for t in texts if t.strip()]


def files_for(n_chunks: int, embedder: Embedder, texts: list[str]) -> tuple[list[str], list[str]]:
    """(file texts holding about ``n_chunks`` chunks, spare file texts for adds/changes)."""
    from llamaeval.engine import ChunkingConfig, ParsedDocument, chunk_document

    chunking = ChunkingConfig(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    out: list[str] = []
    total = 0
    k = 0
    while total < n_chunks + 40 * 30:  # ~30 spare files beyond the pipeline's
        group = [texts[(k + j) % len(texts)] for j in range(DOCS_PER_FILE)]
        k += DOCS_PER_FILE
        if k >= len(texts):  # a second pass over the text: shifted groups, so files differ
            group = group[1:] + group[:1]
        text = "\n\n".join(group)
        out.append(text)
        if total < n_chunks:
            total += len(chunk_document(ParsedDocument(text=text), chunking, embedder))
            split = len(out)
        else:
            total += 40
    return out[:split], out[split:]


class Bench:
    def __init__(self, tmp: Path, embedder: RandomVectors) -> None:
        self.config = ServerConfig(data_dir=tmp)
        self.layout = DataLayout(self.config.data_dir)
        self.layout.create()
        self.storage = SQLiteStorage(self.layout.db_path)
        self.indexes = IndexCache(self.layout, embedder)
        self.sync = SyncService(self.storage, self.layout, self.config, embedder, self.indexes, embed_cache=None)
        self.services = Services(config=self.config, storage=self.storage, layout=self.layout, embedder=embedder,
                                 indexes=self.indexes, sync=self.sync)
        self.acct = self.storage.create_account("bench").id
        project = self.services.create_project(self.acct, "p").id
        self.pid = self.services.create_pipeline(
            self.acct, project, "p", chunking_config={"chunk_size": CHUNK_SIZE, "chunk_overlap": CHUNK_OVERLAP}).id
        self.build_s = 0.0
        inner = self.sync._build_and_swap

        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                self.build_s = time.perf_counter() - t

        self.sync._build_and_swap = timed  # type: ignore[method-assign]

    def sync_now(self) -> dict[str, Any]:
        t = time.perf_counter()
        cpu = time.thread_time()
        job = self.services.request_sync(self.acct, self.pid)
        self.sync._run(self.storage.get_job(job.id))
        total = time.perf_counter() - t
        cpu = time.thread_time() - cpu
        job = self.storage.get_job(job.id)
        if job.status != "completed":
            raise RuntimeError(f"sync failed: {job.error}")
        pipeline = self.storage.get_pipeline_any(self.pid)
        manifest = self.layout.index_dir(self.pid, pipeline.index_version) / "manifest.json"
        import json

        segments = len(json.loads(manifest.read_text())["segments"])
        new = sum(1 for p in (manifest.parent / "segments").iterdir() if p.stat().st_nlink == 1)
        return {"total_s": total, "cpu_s": cpu, "build_s": self.build_s, "chunks": pipeline.num_chunks,
                "segments": segments,
                "written": new}

    def upsert(self, doc_id: str, text: str) -> None:
        self.services.upsert_documents(self.acct, self.pid, [(doc_id, text, {"doc": doc_id})])

    def full_rebuild_state(self) -> None:
        """No segment of the current version and nothing loaded: the next sync builds it all."""
        pipeline = self.storage.get_pipeline_any(self.pid)
        for seg in (self.layout.index_dir(self.pid, pipeline.index_version) / "segments").iterdir():
            seg.unlink()
        self.indexes.drop(self.pid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "incremental_index.md"))
    args = ap.parse_args()
    inner = Embedder().load()
    texts = documents()
    t = time.perf_counter()
    files, spare = files_for(args.chunks, inner, texts)
    print(f"{len(files)} files (+{len(spare)} spare) from {len(texts)} documents in {time.perf_counter() - t:.1f} s",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp), RandomVectors(inner))
        t = time.perf_counter()
        bench.services.upsert_documents(bench.acct, bench.pid,
                                        [(f"d{i}", text, {"doc": f"d{i}"}) for i, text in enumerate(files)])
        first = bench.sync_now()
        print(f"first sync: {first} in {time.perf_counter() - t:.1f} s", flush=True)
        rows: dict[str, list[dict[str, Any]]] = {"add after a cold load": [], "add": [], "change": [], "remove": [],
                                                 "full rebuild": []}
        spare_i = 0
        for r in range(args.repeats):
            # the first one-file sync after a cold build (first sync, full rebuild or restart) pays
            # first-use costs of the freshly loaded version; the next ones are the steady state
            bench.upsert(f"new{r}", spare[spare_i])
            spare_i += 1
            rows["add after a cold load"].append(bench.sync_now())
            bench.upsert(f"again{r}", spare[spare_i])
            spare_i += 1
            rows["add"].append(bench.sync_now())
            bench.upsert(f"d{10 * r + 5}", spare[spare_i])
            spare_i += 1
            rows["change"].append(bench.sync_now())
            bench.services.delete_document(bench.acct, bench.pid, f"d{10 * r + 7}")
            rows["remove"].append(bench.sync_now())
            bench.full_rebuild_state()
            bench.upsert(f"d{10 * r + 9}", spare[spare_i])
            spare_i += 1
            rows["full rebuild"].append(bench.sync_now())
            for kind, got in rows.items():
                print(r, kind, {k: round(v, 3) if isinstance(v, float) else v for k, v in got[-1].items()},
                      flush=True)
        bench.storage.close()
    full = statistics.median(x["total_s"] for x in rows["full rebuild"])
    lines = [
        "# Incremental index: one-file syncs vs a full rebuild (issue 17)",
        "",
        f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/incremental_index.py --chunks {args.chunks} "
        f"--repeats {args.repeats}`, 2-core machine shared with other jobs (medians of {args.repeats} "
        "alternated runs; ratios within the run).",
        "",
        f"Pipeline: {first['chunks']:,} chunks in {len(files):,} files of {DOCS_PER_FILE} real documents each "
        f"(bundled {', '.join(COLLECTIONS)}, cycled), chunk_size {CHUNK_SIZE} / overlap {CHUNK_OVERLAP}; "
        "**random unit vectors instead of MiniLM's** (no embedding time in any figure). Each job runs "
        "through `SyncService` over SQLite (the documents API: upsert / delete), as the server's worker runs it.",
        "",
        f"Load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores — wall seconds "
        "include waiting for a core; CPU seconds (the sync thread's `time.thread_time`) are what the job "
        "itself costs.",
        "",
        "| sync | wall s (median) | CPU s (median) | of which index build + load + swap, wall s | "
        "segments written / in the index | wall vs full rebuild | CPU vs full rebuild |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    full_cpu = statistics.median(x["cpu_s"] for x in rows["full rebuild"])
    for kind, got in rows.items():
        tot = statistics.median(x["total_s"] for x in got)
        cpu = statistics.median(x["cpu_s"] for x in got)
        bld = statistics.median(x["build_s"] for x in got)
        label = ("full rebuild (1 file changed, no segment reusable)" if kind == "full rebuild"
                 else "add one file, the first sync after a cold build" if kind == "add after a cold load"
                 else f"{kind} one file")
        lines.append(f"| {label} | {tot:.3f} | {cpu:.3f} | {bld:.3f} | {got[-1]['written']} / "
                     f"{got[-1]['segments']} | {tot / full:.1%} | {cpu / full_cpu:.1%} |")
    lines += ["", f"First sync (all {len(files)} files, parse + chunk + random vectors + index): "
              f"{first['total_s']:.1f} s.", "", BEFORE, "", DESIGN]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
