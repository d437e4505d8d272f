"""Query sets: load, validate, ingest, and map retrieved chunks to judged documents.

    QuerySet            queries + graded judgements (+ corpus) as DataFrames, validated
    load_queryset       bundled name ("adi", "med", "cranfield", "cisi", "scifact") or a folder
    load_beir / load_trec / load_csv / load_jsonl / from_frames     format readers
    write_beir / write_trec / write_csv / write_jsonl               ... and writers
    ingest              corpus -> pipeline, one file per document, idempotent, waits for sync
    DocumentMapping     chunk -> document id (metadata key, else file stem); collapse to best rank
    check_alignment     AlignmentError when a run's ids barely overlap the judgements

No judgements yet (your own documents):
    simulate_queries    known-item queries generated from documents (SimulationConfig; seeded)
    read_folder / pipeline_documents    documents of a folder, or read back from a pipeline
    pool                the top-k of every configuration of a run, deduplicated and shuffled
    JudgingSession      judge a pool item by item, saved at once as TREC/CSV qrels, resumable
                        (the Jupyter widget: llamaeval.widgets.judge)
"""

from __future__ import annotations

from llamaeval.datasets._alignment import AlignmentReport, AlignmentWarning, check_alignment
from llamaeval.datasets._formats import (
    beir_splits,
    detect_format,
    from_frames,
    load_beir,
    load_csv,
    load_folder,
    load_jsonl,
    load_trec,
    read_trec_documents,
    read_trec_qrels,
    read_trec_topics,
    write_beir,
    write_csv,
    write_jsonl,
    write_trec,
)
from llamaeval.datasets._ingest import document_content, document_file_name, ingest
from llamaeval.datasets._judgements import DEFAULT_GRADES, JudgementLog, JudgingSession
from llamaeval.datasets._mapping import DocumentMapping, chunk_qrels
from llamaeval.datasets._queryset import QuerySet, QuerySetWarning
from llamaeval.datasets._pooling import Pool, pool
from llamaeval.datasets._registry import BUNDLED, bundled_path, load_queryset
from llamaeval.datasets._simulate import SimulatedQuerySet, SimulationConfig, simulate_queries
from llamaeval.datasets._sources import pipeline_documents, read_folder

__all__ = [
    "BUNDLED",
    "DEFAULT_GRADES",
    "AlignmentReport",
    "AlignmentWarning",
    "DocumentMapping",
    "JudgementLog",
    "JudgingSession",
    "Pool",
    "QuerySet",
    "QuerySetWarning",
    "SimulatedQuerySet",
    "SimulationConfig",
    "beir_splits",
    "bundled_path",
    "check_alignment",
    "chunk_qrels",
    "detect_format",
    "document_content",
    "document_file_name",
    "from_frames",
    "ingest",
    "load_beir",
    "load_csv",
    "load_folder",
    "load_jsonl",
    "load_queryset",
    "load_trec",
    "pipeline_documents",
    "pool",
    "read_folder",
    "read_trec_documents",
    "read_trec_qrels",
    "read_trec_topics",
    "simulate_queries",
    "write_beir",
    "write_csv",
    "write_jsonl",
    "write_trec",
]
