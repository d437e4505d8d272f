"""ingest against the real local server: one file per document, idempotent, resumable after a crash."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from llamaeval import ConfigurationError, DocumentMapping, QuerySetError, ingest, load_queryset
from llamaeval.datasets import document_content, document_file_name


class Crash(RuntimeError):
    pass


class CountingFiles:
    """The real client's ``files`` namespace, counting uploads and optionally crashing after N of them."""

    def __init__(self, files, crash_after: int | None = None) -> None:
        self._files, self.crash_after, self.uploads = files, crash_after, 0
        self._lock = threading.Lock()   # ingest uploads from worker threads

    def upload(self, *args, **kwargs):
        with self._lock:
            if self.crash_after is not None and self.uploads >= self.crash_after:
                raise Crash("simulated crash")
            self.uploads += 1
        return self._files.upload(*args, **kwargs)


class Wrapped:
    """A real client whose uploads are counted (everything else passes through)."""

    def __init__(self, client, crash_after: int | None = None) -> None:
        self._client = client
        self.files = CountingFiles(client.files, crash_after)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.fixture(scope="module")
def adi10():
    adi = load_queryset("adi")
    return adi.subset(doc_ids=adi.corpus["doc_id"].head(10), name="adi10")


def test_ingest_twice_leaves_one_file_per_document(client, adi10):
    first = Wrapped(client)
    pid = ingest(first, adi10, project="datasets-tests", pipeline="adi10-twice", batch_size=4, progress=False)
    assert first.files.uploads == 10
    files = client.pipelines.files.list(pid)
    assert sorted(files["metadata.doc_id"]) == sorted(adi10.corpus["doc_id"])
    assert sorted(files["name"]) == sorted(f"{d}.txt" for d in adi10.corpus["doc_id"])
    assert set(files["status"].astype(str)) == {"completed"}

    second = Wrapped(client)
    again = ingest(second, adi10, project="datasets-tests", pipeline="adi10-twice", batch_size=4, progress=False)
    assert again == pid and second.files.uploads == 0
    files = client.pipelines.files.list(pid)
    assert len(files) == 10 and files["metadata.doc_id"].is_unique
    projects = client.projects.list()
    assert (projects["name"] == "datasets-tests").sum() == 1
    pipelines = client.pipelines.list(projects.loc[projects["name"] == "datasets-tests", "id"].iloc[0])
    assert (pipelines["name"] == "adi10-twice").sum() == 1

    # what was indexed maps back to the judged documents
    doc = adi10.corpus.iloc[0]
    result = client.pipelines.retrieve(pid, doc["title"], top_k=3)
    assert DocumentMapping().doc_id({"doc_id": result.frame["doc_id"].iloc[0]}) == doc["doc_id"]


def test_ingest_resumes_after_a_crash(client, adi10):
    crashing = Wrapped(client, crash_after=6)
    with pytest.raises(Crash):
        ingest(crashing, adi10, project="datasets-tests", pipeline="adi10-resume", batch_size=4, progress=False)
    projects = client.projects.list()
    project_id = projects.loc[projects["name"] == "datasets-tests", "id"].iloc[0]
    pipelines = client.pipelines.list(project_id)
    pid = pipelines.loc[pipelines["name"] == "adi10-resume", "id"].iloc[0]
    # the first batch, and the two uploads of the second batch that succeeded, are in the pipeline
    assert len(client.pipelines.files.list(pid)) == 6

    resumed = Wrapped(client)
    assert ingest(resumed, adi10, project="datasets-tests", pipeline="adi10-resume", batch_size=4,
                  progress=False) == pid
    assert resumed.files.uploads == 4                          # only what was missing
    files = client.pipelines.files.list(pid)
    assert sorted(files["metadata.doc_id"]) == sorted(adi10.corpus["doc_id"])
    assert set(files["status"].astype(str)) == {"completed"}


def test_ingest_skips_empty_documents(client):
    from llamaeval import QuerySet
    from llamaeval.datasets import QuerySetWarning

    queries = pd.DataFrame({"query_id": ["1"], "text": ["wing"]})
    qrels = pd.DataFrame({"query_id": ["1"], "doc_id": ["a"], "relevance": [1]})
    corpus = pd.DataFrame({"doc_id": ["a", "b"], "title": ["Wing", ""], "text": ["lift and drag", " "]})
    with pytest.warns(QuerySetWarning):
        qs = QuerySet("tiny", queries, qrels, corpus)
    with pytest.warns(QuerySetWarning, match=r"skipping 1 empty document\(s\) \['b'\]"):
        pid = ingest(client, qs, project="datasets-tests", progress=False)
    assert client.pipelines.files.list(pid)["metadata.doc_id"].tolist() == ["a"]


def test_ingest_argument_errors(client):
    adi = load_queryset("adi")
    with pytest.raises(QuerySetError, match="no corpus"):
        ingest(client, adi.__class__("x", adi.queries, adi.qrels), progress=False)
    with pytest.raises(ConfigurationError):
        ingest(client, adi, batch_size=0, progress=False)
    with pytest.raises(ConfigurationError):
        ingest(client, "adi", progress=False)  # type: ignore[arg-type]


def test_file_name_and_content():
    assert document_file_name("a/b:c") == "a_b_c.txt"
    assert document_content("Title", "Body") == "Title\n\nBody"
    assert document_content("", "Body") == "Body"
