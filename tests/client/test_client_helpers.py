"""Bulk uploads and wait_for_sync against a small in-memory fake of the API (MockTransport)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pandas as pd
import pytest

from llamaeval import ConfigurationError, ServerError, SyncError
from llamaeval.client import RetryPolicy


class FakeAPI:
    """Just enough of the API for the helpers: uploads, adding files, jobs, pipeline files."""

    def __init__(self, jobs: list[list[dict]] | None = None, fail_upload: str | None = None) -> None:
        self.uploads: list[tuple[str, bytes]] = []
        self.added: list[list[dict]] = []
        self.job_polls = list(jobs or [])
        self.fail_upload = fail_upload
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST" and path == "/api/v1/files":
            body = request.content
            name = re.search(rb'filename="([^"]+)"', body).group(1).decode()
            data = body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
            if name == self.fail_upload:
                return httpx.Response(500, json={"detail": "disk full"})
            self.uploads.append((name, data))
            return httpx.Response(200, json={"id": f"f{len(self.uploads)}", "name": name, "file_size": len(data),
                                             "project_id": request.url.params["project_id"]})
        if request.method == "PUT" and path.endswith("/files"):
            items = json.loads(request.content)
            self.added.append(items)
            return httpx.Response(200, json=[{"file_id": i["file_id"], "status": "pending",
                                              "metadata": i.get("metadata") or {}} for i in items])
        if request.method == "GET" and path.endswith("/jobs"):
            jobs = self.job_polls.pop(0) if len(self.job_polls) > 1 else self.job_polls[0]
            return httpx.Response(200, json=jobs)
        if request.method == "GET" and path.endswith("/files"):
            return httpx.Response(200, json=[{"file_id": "f1", "status": "completed"},
                                             {"file_id": "f2", "status": "processing"}])
        return httpx.Response(404, json={"detail": f"no route {request.method} {path}"})

    def count(self, method: str, suffix: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.url.path.endswith(suffix))


DOCS = pd.DataFrame({
    "doc_id": ["1", "2", "a/b", "4", "5"],
    "title": ["One", "", None, "Four", "Five"],
    "text": ["first text", "second", "third", "fourth", "fifth"],
    "year": [1990, 1991, 1992, 1993, 1994],
})


def test_upload_documents_in_batches_with_metadata(harness):
    api = FakeAPI()
    h = harness(api)
    frame = h.run(lambda c: c.files.upload_documents(DOCS, "proj", "pl1", metadata_columns=["year"],
                                                     batch_size=2, progress=False))
    assert [len(batch) for batch in api.added] == [2, 2, 1]
    assert sorted(name for name, _ in api.uploads) == ["1.txt", "2.txt", "4.txt", "5.txt", "a_b.txt"]
    contents = dict(api.uploads)
    assert contents["1.txt"] == b"One\n\nfirst text" and contents["2.txt"] == b"second"
    assert contents["a_b.txt"] == b"third"
    added = [item for batch in api.added for item in batch]
    assert [item["metadata"] for item in added][:2] == [{"doc_id": "1", "year": 1990}, {"doc_id": "2", "year": 1991}]
    assert list(frame.columns) == ["doc_id", "file_id", "file_name", "file_size", "metadata.year"]
    assert str(frame["metadata.year"].dtype) == "Int64"
    assert frame["doc_id"].tolist() == DOCS["doc_id"].tolist()
    by_name = {name: i for i, (name, _) in enumerate(api.uploads, 1)}
    assert frame["file_id"].tolist() == [f"f{by_name[n]}" for n in frame["file_name"]]
    assert frame.loc[frame["doc_id"] == "a/b", "file_name"].item() == "a_b.txt"


def test_upload_documents_without_pipeline_adds_nothing(harness):
    api = FakeAPI()
    h = harness(api)
    frame = h.run(lambda c: c.files.upload_documents(DOCS.head(2), "proj", progress=True))
    assert len(frame) == 2 and api.added == []


@pytest.mark.parametrize(("docs", "needle"), [
    (pd.DataFrame({"doc_id": ["1", "1"], "text": ["a", "b"]}), "duplicate"),
    (pd.DataFrame({"doc_id": ["1", None], "text": ["a", "b"]}), "missing ids"),
    (pd.DataFrame({"id": ["1"], "text": ["a"]}), "doc_id"),
    (pd.DataFrame({"doc_id": [], "text": []}), "empty"),
])
def test_upload_documents_checks_the_frame_first(harness, docs, needle):
    api = FakeAPI()
    h = harness(api)
    with pytest.raises(ConfigurationError, match=needle):
        h.run(lambda c: c.files.upload_documents(docs, "proj", "pl1", progress=False))
    assert api.requests == []


def test_failed_upload_stops_before_adding_the_batch(harness):
    api = FakeAPI(fail_upload="2.txt")
    h = harness(api)
    with pytest.raises(ServerError, match="disk full"):
        h.run(lambda c: c.files.upload_documents(DOCS, "proj", "pl1", batch_size=2, progress=False))
    assert api.added == [] and api.count("POST", "/files") <= 2  # a create is never repeated


def test_upload_folder(harness, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("bee")
    (tmp_path / "a.md").write_text("# A")
    (tmp_path / ".hidden").write_text("x")
    api = FakeAPI()
    h = harness(api)
    frame = h.run(lambda c: c.files.upload_folder(tmp_path, "proj", "pl1", progress=False,
                                                  metadata=lambda p: {"doc_id": p.stem}))
    assert frame["path"].tolist() == ["a.md", "sub/b.txt"]
    assert frame["metadata.doc_id"].tolist() == ["a", "b"] and frame["file_size"].tolist() == [3, 3]
    assert api.added == [[{"file_id": frame["file_id"][0], "metadata": {"file_path": "a.md", "doc_id": "a"}},
                          {"file_id": frame["file_id"][1], "metadata": {"file_path": "sub/b.txt", "doc_id": "b"}}]]


def test_upload_folder_needs_matching_files(harness, tmp_path):
    h = harness(FakeAPI())
    with pytest.raises(ConfigurationError, match="no files"):
        h.run(lambda c: c.files.upload_folder(tmp_path, "proj", pattern="*.pdf"))


def _job(status: str, created: str = "2026-01-01T00:00:00Z", job_id: str = "j1", **extra) -> dict:
    return {"id": job_id, "pipeline_id": "pl1", "status": status, "created_at": created, **extra}


def test_wait_for_sync_polls_until_completed(harness):
    counters = {"num_files": 2, "num_processed": 1, "num_failed": 0}
    api = FakeAPI(jobs=[[_job("pending", **counters)], [_job("running", **counters)],
                        [_job("completed", completed_at="2026-01-01T00:00:04Z", **counters)]])
    h = harness(api)
    job = h.run(lambda c: c.pipelines.wait_for_sync("pl1", poll_interval=0.25, progress=True))
    assert job.status == "completed" and job.duration_s == 4.0
    assert api.count("GET", "/jobs") == 3 and h.sleeps == [0.25, 0.25]
    assert api.count("GET", "/files") == 0  # the job's counters drive the bar


def test_wait_for_sync_counts_files_when_jobs_have_no_counters(harness):
    api = FakeAPI(jobs=[[_job("running")], [_job("completed")]])
    h = harness(api)
    h.run(lambda c: c.pipelines.wait_for_sync("pl1", progress=True))
    assert api.count("GET", "/files") == 2


def test_wait_for_sync_follows_the_newest_job(harness):
    old = _job("failed", "2026-01-01T00:00:00Z", "old", error="stale")
    api = FakeAPI(jobs=[[_job("completed", "2026-01-02T00:00:00Z", "new"), old]])
    h = harness(api)
    assert h.run(lambda c: c.pipelines.wait_for_sync("pl1", progress=False)).id == "new"
    with pytest.raises(SyncError, match="stale"):
        h.run(lambda c: c.pipelines.wait_for_sync("pl1", progress=False, job_id="old"))


def test_wait_for_sync_raises_the_jobs_error(harness):
    api = FakeAPI(jobs=[[_job("running")], [_job("failed", error="PDF has no text layer")]])
    h = harness(api)
    with pytest.raises(SyncError, match="failed: PDF has no text layer"):
        h.run(lambda c: c.pipelines.wait_for_sync("pl1", progress=False))


def test_wait_for_sync_without_a_job(harness):
    h = harness(FakeAPI(jobs=[[]]))
    with pytest.raises(SyncError, match=r"call pipelines.sync\(\) first"):
        h.run(lambda c: c.pipelines.wait_for_sync("pl1", progress=False))


def test_wait_for_sync_times_out(harness):
    async def async_sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    api = FakeAPI(jobs=[[_job("running")]])
    h = harness(api, retry=RetryPolicy(sleep=time.sleep, async_sleep=async_sleep))
    with pytest.raises(SyncError, match=r"did not finish within 0\.05 s"):
        h.run(lambda c: c.pipelines.wait_for_sync("pl1", timeout=0.05, poll_interval=0.01, progress=False))
    assert api.count("GET", "/jobs") >= 2
