"""Put a query set's corpus into a pipeline: one file per document, resumable and idempotent."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from llamaeval._errors import ConfigurationError, QuerySetError
from llamaeval.datasets._mapping import _stem
from llamaeval.datasets._queryset import QuerySet, warn

_UNSAFE = re.compile(r"[\\/:*?\"<>|\x00-\x1f]")


def document_file_name(doc_id: str) -> str:
    """The file name a document is uploaded under: ``<doc_id>.txt`` (path-unsafe characters -> ``_``)."""
    return f"{_UNSAFE.sub('_', doc_id)}.txt"


def document_content(title: str, text: str) -> str:
    """The uploaded text: the title, a blank line, then the text (just the text when untitled)."""
    title, text = title.strip(), text.strip()
    return f"{title}\n\n{text}" if title and text else (title or text)


def _find_by_name(frame: pd.DataFrame, name: str) -> str | None:
    if frame is None or len(frame) == 0 or "name" not in frame.columns or "id" not in frame.columns:
        return None
    rows = frame[frame["name"].astype(str) == name]
    if len(rows) > 1 and "created_at" in rows.columns:
        rows = rows.sort_values("created_at", kind="stable")
    return None if rows.empty else str(rows["id"].iloc[0])


def _present_doc_ids(files: pd.DataFrame, metadata_key: str) -> set[str]:
    """Document ids already in the pipeline: from ``metadata.<key>`` (or a dict column), else the file name."""
    if files is None or len(files) == 0:
        return set()
    ids = pd.Series([None] * len(files), index=files.index, dtype=object)
    for column in (f"metadata.{metadata_key}", metadata_key):
        if column in files.columns:
            values = files[column].astype(object)
            ids = ids.where(ids.notna(), values.where(values.notna(), None))
    if "metadata" in files.columns:
        from_dict = files["metadata"].map(lambda m: m.get(metadata_key) if isinstance(m, dict) else None)
        ids = ids.where(ids.notna(), from_dict)
    for column in ("name", "file_name"):
        if column in files.columns:
            ids = ids.where(ids.notna(), files[column].map(_stem))
    return {str(v) for v in ids if v is not None and str(v) != ""}


def _batches(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start:start + size]


def _resolve_project(client: Any, project: str) -> str:
    found = _find_by_name(client.projects.list(), project)
    return found if found is not None else str(client.projects.create(project).id)


def _resolve_pipeline(client: Any, name: str, project_id: str, create_options: dict[str, Any]) -> str:
    found = _find_by_name(client.pipelines.list(project_id), name)
    if found is not None:
        return found
    return str(client.pipelines.create(name, project_id, **create_options).id)


def ingest(client: Any, queryset: QuerySet, project: str = "llamaeval", pipeline: str | None = None,
           batch_size: int = 100, progress: bool = True, *, metadata_key: str = "doc_id",
           concurrency: int = 4, sync: bool = True, timeout: float = 1800.0,
           retrieval_config: dict[str, Any] | None = None,
           chunking_config: dict[str, Any] | None = None,
           embedding_model: str | None = None,
           on_sync_progress: Callable[[Any], None] | None = None) -> str:
    """Upload ``queryset``'s corpus into a pipeline, sync it, wait, and return the pipeline id.

    - The project and pipeline are found by name, or created (``pipeline`` defaults to
      the query set's name; ``retrieval_config`` / ``chunking_config`` / ``embedding_model``
      apply only when creating it).
    - One file per document: ``<doc_id>.txt`` holding the title, a blank line, the text;
      custom metadata ``{metadata_key: doc_id}`` (what :class:`DocumentMapping` reads back).
    - Idempotent and resumable: documents whose id is already among the pipeline's files
      are skipped, and each batch of ``batch_size`` uploads (``concurrency`` at a time) is
      added to the pipeline before the next starts — also when part of a batch failed —
      so a run that crashed or was interrupted continues where it stopped.
    - Documents with empty title and text are skipped with a warning (nothing to index;
      Cranfield 471 and 995).
    - Syncs when something was added or the pipeline is not yet in sync, then waits up to
      ``timeout`` seconds (SyncError if the job fails). ``progress`` shows tqdm bars (the sync's
      counts chunks embedded / total with rate and ETA on the local server);
      ``on_sync_progress(job)`` is called with the sync job at every poll (e.g. for log lines).
    """
    if not isinstance(queryset, QuerySet):
        raise ConfigurationError(f"ingest needs a QuerySet, got {type(queryset).__name__}")
    if queryset.corpus is None:
        raise QuerySetError(f"query set {queryset.name!r} has no corpus to ingest")
    if batch_size < 1 or concurrency < 1:
        raise ConfigurationError("batch_size and concurrency must be >= 1")
    if timeout <= 0:
        raise ConfigurationError("timeout is in seconds and must be > 0")
    name = pipeline or queryset.name
    create_options = {k: v for k, v in (("retrieval_config", retrieval_config),
                                        ("chunking_config", chunking_config),
                                        ("embedding_model", embedding_model)) if v is not None}
    project_id = _resolve_project(client, project)
    pipeline_id = _resolve_pipeline(client, name, project_id, create_options)

    corpus = queryset.corpus
    empty = (corpus["title"].str.strip() == "") & (corpus["text"].str.strip() == "")
    if empty.any():
        skipped = corpus.loc[empty, "doc_id"].tolist()
        warn(f"{queryset.name}: skipping {len(skipped)} empty document(s) {skipped[:5]}; they cannot be "
             "retrieved (judgements for them still count)")
    present = _present_doc_ids(client.pipelines.files.list(pipeline_id), metadata_key)
    todo = corpus[~empty & ~corpus["doc_id"].isin(present)]

    from tqdm.auto import tqdm

    def upload(row: tuple[str, str, str]) -> dict[str, Any]:
        doc_id, title, text = row
        data = document_content(title, text).encode("utf-8")
        uploaded = client.files.upload(data, project_id=project_id, name=document_file_name(doc_id))
        return {"file_id": str(uploaded.id), "metadata": {metadata_key: doc_id}}

    total = int((~empty).sum())
    with tqdm(total=total, initial=total - len(todo), desc=f"ingest {queryset.name}", unit="doc",
              disable=not progress) as bar, ThreadPoolExecutor(max_workers=concurrency) as pool:
        for batch in _batches(todo, batch_size):
            rows = list(batch[["doc_id", "title", "text"]].itertuples(index=False, name=None))
            futures = [pool.submit(upload, row) for row in rows]
            entries, failure = [], None
            for future in futures:
                try:
                    entries.append(future.result())
                except BaseException as exc:  # noqa: BLE001 - re-raised below, after saving the rest
                    failure = failure or exc
            if entries:  # what did upload is added even if part of the batch failed: nothing is redone
                client.pipelines.files.add(pipeline_id, entries)
                bar.update(len(entries))
            if failure is not None:
                raise failure

    if sync:
        _sync_if_needed(client, pipeline_id, added=len(todo), timeout=timeout, progress=progress,
                        on_progress=on_sync_progress)
    return pipeline_id


def _sync_if_needed(client: Any, pipeline_id: str, *, added: int, timeout: float, progress: bool,
                    on_progress: Callable[[Any], None] | None = None) -> None:
    files = client.pipelines.files.list(pipeline_id)
    unfinished = 0
    if files is not None and len(files) and "status" in files.columns:
        unfinished = int(files["status"].astype(str).isin(["pending", "processing"]).sum())
    status = str(getattr(client.pipelines.get(pipeline_id), "status", "") or "")
    if added or unfinished or status in ("idle", "error", ""):
        job = client.pipelines.sync(pipeline_id)
        client.pipelines.wait_for_sync(pipeline_id, timeout=timeout, progress=progress, job_id=str(job.id),
                                       on_progress=on_progress)
    elif status == "syncing":  # someone else's sync is running: wait for it
        client.pipelines.wait_for_sync(pipeline_id, timeout=timeout, progress=progress, on_progress=on_progress)
