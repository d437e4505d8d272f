"""Crash recovery: ``llamaeval serve`` killed with SIGKILL at chosen moments of upload and sync,
restarted on the same data dir, loses nothing, leaves no job ``running``, keeps serving the
last completed index, and the next sync ranks exactly like an uninterrupted reference.

How a moment is hit without a hook in the server: the test *single-steps* the server process.
It lets it run for a slice of a few milliseconds (SIGCONT), freezes it (SIGSTOP, waiting until
every thread is stopped), and looks at the data dir — the build directory of an index, the
chunk files written so far, the upload being stored — and, read-only, at the database. When the
wanted stage is on disk the frozen process gets SIGKILL; otherwise it runs one more slice. A
stage that lasts longer than one slice therefore cannot be skipped, and the server runs its
real code at full speed inside each slice (no mock, no pause point compiled into the product).
So that a slice ends on time on a loaded machine, the stepping loop runs at real-time priority
where the OS allows it (else at normal priority: the stages hit last 5-100 ms, the slices
0.5-2 ms). Linux only (``/proc`` tells when every thread is stopped).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
from server_helpers import api, upload, wait_job

from llamaeval.server import EmbeddedServer
from llamaeval.server._config import DataLayout

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="steps the server with SIGSTOP/SIGCONT and reads /proc"),
              pytest.mark.timeout(300)]

SUBJECTS = ("Swept wings", "Turbofan engines", "Landing gear", "Helicopter rotors", "Sailplanes", "Wind tunnels",
            "Jet nozzles", "Propeller blades", "Ailerons", "Fuel tanks")
TRAITS = ("delay the drag rise at transonic speed", "need an inspection after every hard landing",
          "are tested for flutter and fatigue", "take most of the maintenance budget")
#: 40 short documents (more than one embedding batch): a sync's embedding has a middle to be killed in
DOCS = {f"doc{i:02d}.txt": f"{s} {t}, note {i}." for i, (s, t) in enumerate((s, t) for t in TRAITS for s in SUBJECTS)}
QUERIES = ("transonic drag of swept wings", "fatigue testing of rotor blades", "maintenance cost of engines",
           "inspection of the landing gear after a hard landing")
FIRST = 30  # files of a pipeline's first index in the build/swap test; the other 10 come later
UPLOAD_MB = 16  # the large upload (the server's limit is above it)


# -- single-stepping the server process -----------------------------------------------------------
def _all_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (or already gone)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread has just ended
            continue
        if stat[stat.rindex(")") + 2] not in "TtZX":
            return False
    return True


@contextmanager
def _on_time() -> Iterator[None]:
    """This thread at real-time priority (its sleeps end on time whatever else runs), when allowed."""
    try:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(os.sched_get_priority_min(os.SCHED_FIFO)))
    except (OSError, AttributeError):  # not permitted (or not Linux): ordinary scheduling
        yield
        return
    try:
        yield
    finally:
        os.sched_setscheduler(0, *before)


def freeze_when(server: EmbeddedServer, stage: Callable[[], bool], slice_s: float = 0.002,
                timeout: float = 60.0) -> None:
    """Run ``server`` in slices of ``slice_s`` seconds until ``stage()`` is true while it is frozen;
    it is left frozen (SIGSTOP) at that point. AssertionError if the stage never comes."""
    with _on_time():
        _step(server, stage, slice_s, timeout)


def _step(server: EmbeddedServer, stage: Callable[[], bool], slice_s: float, timeout: float) -> None:
    pid = server.process.pid
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and server.running:
            os.kill(pid, signal.SIGSTOP)
            while not _all_stopped(pid) and time.monotonic() < deadline:
                time.sleep(0.0002)
            if stage():
                return
            os.kill(pid, signal.SIGCONT)
            time.sleep(slice_s)
    except BaseException:
        if server.running:
            os.kill(pid, signal.SIGCONT)
        raise
    if server.running:
        os.kill(pid, signal.SIGCONT)
    raise AssertionError(f"the server never reached the stage in {timeout} s (running: {server.running})")


def sync_and_freeze_when(server: EmbeddedServer, pipeline: str, stage: Callable[[], bool],
                         slice_s: float = 0.0005) -> None:
    """Ask for a sync of ``pipeline`` and freeze ``server`` at ``stage``, with the slicing already
    running when the request is sent: a sync that needs no embedding (its vectors cached by an
    earlier, killed attempt) can finish in a fraction of a second, before a freeze that starts
    after the answer would look at it."""
    def request() -> None:
        try:
            with api(server) as c:
                c.post(f"/pipelines/{pipeline}/sync")
        except httpx.HTTPError:
            pass  # killed at the stage before its answer went out: the job is found from the list

    sender = threading.Thread(target=request, daemon=True)
    sender.start()
    freeze_when(server, stage, slice_s=slice_s)


def newest_job(c: httpx.Client, pipeline: str) -> dict[str, Any]:
    return max(c.get(f"/pipelines/{pipeline}/jobs").json(), key=lambda j: j["created_at"])


def kill_and_restart(server: EmbeddedServer) -> None:
    """SIGKILL (frozen or not), then start again on the same data dir, port and key."""
    server.kill()
    server.start()


def _index_version(server: EmbeddedServer, pipeline: str) -> str | None:
    """The index version the database names for ``pipeline`` (read-only: safe while the server is frozen)."""
    db = sqlite3.connect(f"file:{server.data_dir / 'llamaeval.db'}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT index_version FROM pipelines WHERE id = ?", (pipeline,)).fetchone()
    finally:
        db.close()
    return row[0]


# -- the world the kills happen in ----------------------------------------------------------------
@pytest.fixture(scope="module")
def crash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(data_dir=tmp_path_factory.mktemp("crash"), max_upload_mb=UPLOAD_MB + 4) as srv:
        yield srv


@pytest.fixture(scope="module")
def world(crash_server: EmbeddedServer) -> dict[str, Any]:
    """A project with the 40 files and the reference pipeline holding all of them, synced once
    without interruption: what every interrupted pipeline must rank like after its next sync."""
    with api(crash_server) as c:
        project = c.post("/projects", json={"name": "crash"}).json()["id"]
        files = [upload(c, project, name, text.encode()).json()["id"] for name, text in DOCS.items()]
        reference = _pipeline(c, project, "reference", files)
        assert wait_job(c, reference, c.post(f"/pipelines/{reference}/sync").json()["id"])["status"] == "completed"
        world = {"project": project, "files": files, "reference": reference}
        world["rankings"] = rankings(c, reference)
        world["objects"] = objects(c, world)
    return world


def _pipeline(c: httpx.Client, project: str, name: str, files: list[str]) -> str:
    pipeline = c.post("/pipelines", json={"name": name, "project_id": project}).json()["id"]
    _add(c, pipeline, files)
    return pipeline


def _add(c: httpx.Client, pipeline: str, files: list[str]) -> None:
    c.put(f"/pipelines/{pipeline}/files", json=[{"file_id": f, "metadata": {"doc_id": f"d{f[:8]}"}}
                                               for f in files]).raise_for_status()


def rankings(c: httpx.Client, pipeline: str) -> dict[str, list[tuple[str, str, float]]]:
    """Each query's top 8: file id, chunk text and score (exact)."""
    out = {}
    for query in QUERIES:
        r = c.post(f"/pipelines/{pipeline}/retrieve", json={"query": query, "top_k": 8})
        assert r.status_code == 200, r.text
        out[query] = [(h["metadata"]["file_id"], h["text"], h["score"]) for h in r.json()["results"]]
    return out


def objects(c: httpx.Client, world: dict[str, Any]) -> dict[str, Any]:
    """What no crash may lose or change: projects, the project's files, the reference pipeline
    (record, files, jobs, index version)."""
    ref = world["reference"]
    cloud = httpx.Client(base_url=str(c.base_url).replace("/api/v1", "/cloud/api/v1"), headers=c.headers,
                         timeout=60)
    with cloud:
        listed = cloud.get("/beta/files", params={"project_id": world["project"], "page_size": 1000}).json()
    return {
        "projects": c.get("/projects").json(),
        "files": sorted((f["id"], f["name"], f["file_size"]) for f in listed["items"]),
        "reference": c.get(f"/pipelines/{ref}").json(),
        "reference_files": c.get(f"/pipelines/{ref}/files").json(),
        "reference_jobs": c.get(f"/pipelines/{ref}/jobs").json(),
        "reference_index": c.get(f"/pipelines/{ref}/data-sinks").json(),
    }


def nothing_lost(server: EmbeddedServer, c: httpx.Client, world: dict[str, Any],
                 extra_pipelines: tuple[str, ...] = ()) -> None:
    """After a restart: every object is there unchanged, the reference still ranks as before, no
    partial write is left in files/, and the given pipelines have no build directory and no file
    left ``processing`` by the dead process."""
    now = objects(c, world)
    assert [p["id"] for p in now["projects"]] == [p["id"] for p in world["objects"]["projects"]]
    assert now == world["objects"]
    assert rankings(c, world["reference"]) == world["rankings"]
    layout = DataLayout(server.data_dir)
    leftovers = [p.name for p in layout.files_dir.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"partial writes left in files/: {leftovers}"
    for pipeline in extra_pipelines:
        indexes = layout.indexes_dir(pipeline)
        assert not (indexes.is_dir() and [d for d in indexes.iterdir() if d.name.startswith(".build")])
        assert "processing" not in {f["status"] for f in c.get(f"/pipelines/{pipeline}/files").json()}


def interrupted(c: httpx.Client, pipeline: str, job_id: str, served: str) -> None:
    """The killed job is ``failed`` as interrupted, and its pipeline says what it still serves."""
    job = c.get(f"/pipelines/{pipeline}/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["error"].startswith("interrupted"), job
    p = c.get(f"/pipelines/{pipeline}").json()
    assert p["status"] == ("active" if served == "previous index" else "idle"), p
    assert p["error"].startswith("interrupted") and served in p["error"], p


def synced_like_the_reference(c: httpx.Client, world: dict[str, Any], pipeline: str) -> dict[str, Any]:
    """A new sync of ``pipeline`` completes and ranks exactly like the reference; returns its job."""
    job = wait_job(c, pipeline, c.post(f"/pipelines/{pipeline}/sync").json()["id"])
    assert job["status"] == "completed" and job["num_failed"] == 0, job
    p = c.get(f"/pipelines/{pipeline}").json()
    assert (p["status"], p["error"], p["num_files"]) == ("active", None, len(DOCS)), p
    assert rankings(c, pipeline) == world["rankings"]
    return job


def _chunk_files(server: EmbeddedServer, pipeline: str) -> int:
    folder = DataLayout(server.data_dir).pipeline_dir(pipeline) / "chunks"
    return len(list(folder.glob("*.npy"))) if folder.is_dir() else 0


# -- the kills ------------------------------------------------------------------------------------
def _stalled_upload(server: EmbeddedServer, project: str, sent: threading.Event,
                    release: threading.Event, outcome: list[Any]) -> None:
    """A large multipart upload whose client stops after half of the body (until ``release``)."""
    boundary = "crash-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    piece, pieces = b"wing " * (1024 * 1024 // 5), UPLOAD_MB

    def body() -> Iterator[bytes]:
        yield head
        for i in range(pieces):
            if i == pieces // 2:
                sent.set()
                release.wait(60)
            yield piece
        yield tail

    length = len(head) + len(piece) * pieces + len(tail)
    try:
        with httpx.Client(timeout=60) as http:
            outcome.append(http.post(f"{server.api_url}/files", params={"project_id": project}, content=body(),
                                      headers={"Authorization": f"Bearer {server.api_key}",
                                               "Content-Type": f"multipart/form-data; boundary={boundary}",
                                               "Content-Length": str(length)}))
    except httpx.HTTPError as exc:
        outcome.append(exc)


def test_killed_mid_embedding_with_an_upload_half_sent_files_just_added_and_a_sync_queued(crash_server, world):
    """One SIGKILL while: pipeline A's sync has embedded part of its files, pipeline B has just been
    given its files (no sync asked), pipeline C's sync waits behind A's, and a 16 MB upload has
    sent half of its body."""
    srv, files = crash_server, world["files"]
    sent, release, outcome = threading.Event(), threading.Event(), []
    with api(srv) as c:
        small = [upload(c, world["project"], f"c{i}.txt", f"Canard foreplanes, variant {i}.".encode()).json()["id"]
                 for i in range(3)]
        world["objects"] = objects(c, world)  # the three small files belong to the world from now on
        a = _pipeline(c, world["project"], "A", files)
        b = _pipeline(c, world["project"], "B", files)  # files added, never synced before the kill
        cpl = _pipeline(c, world["project"], "C", small)
        uploader = threading.Thread(target=_stalled_upload, args=(srv, world["project"], sent, release, outcome))
        uploader.start()
        assert sent.wait(30)
        job_a = c.post(f"/pipelines/{a}/sync").json()
        job_c = c.post(f"/pipelines/{cpl}/sync").json()  # one worker: it waits for A's job
        assert job_c["status"] == "pending"
    try:
        freeze_when(srv, lambda: 0 < _chunk_files(srv, a) < len(files)
                    and not list(DataLayout(srv.data_dir).indexes_dir(a).glob(".build-*")))
        embedded = _chunk_files(srv, a)
        kill_and_restart(srv)
    finally:
        release.set()
        uploader.join(60)
    assert isinstance(outcome[0], httpx.HTTPError), outcome  # the upload died with the server
    with api(srv) as c:
        nothing_lost(srv, c, world, extra_pipelines=(a, b, cpl))
        interrupted(c, a, job_a["id"], served="nothing is searchable yet")
        assert 0 < embedded < len(files)
        kept = sum(f["status"] == "completed" for f in c.get(f"/pipelines/{a}/files").json())
        assert kept < len(files)
        b_files = c.get(f"/pipelines/{b}/files").json()
        assert [f["file_id"] for f in b_files] == files and {f["status"] for f in b_files} == {"pending"}
        assert c.get(f"/pipelines/{b}/jobs").json() == []
        # the queued job was queued again at the start and runs
        assert wait_job(c, cpl, job_c["id"])["status"] == "completed"
        assert c.get(f"/pipelines/{cpl}").json()["num_chunks"] == len(small)
        again = synced_like_the_reference(c, world, a)
        # the files completed before the kill are kept: only the others are processed again
        assert again["num_files"] == len(files) - kept


def test_killed_while_an_upload_is_being_stored(crash_server, world):
    """SIGKILL while the server writes a received 16 MB upload into files/ (before its record)."""
    srv = crash_server
    files_dir = DataLayout(srv.data_dir).files_dir
    outcome: list[Any] = []

    def send() -> None:
        try:
            with api(srv) as c:
                outcome.append(upload(c, world["project"], "big.txt", b"flap " * (UPLOAD_MB * 1024 * 1024 // 5)))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    # the upload's bytes are being copied into files/ (the temporary file has its first piece)
    freeze_when(srv, lambda: any(p.name.startswith(".upload-") and p.stat().st_size > 0
                                 for p in files_dir.iterdir()), slice_s=0.001)
    kill_and_restart(srv)
    sender.join(60)
    assert isinstance(outcome[0], httpx.HTTPError), outcome
    with api(srv) as c:
        nothing_lost(srv, c, world)
        # the same upload again is stored whole
        r = upload(c, world["project"], "big.txt", b"flap " * (UPLOAD_MB * 1024 * 1024 // 5))
        assert r.status_code == 200 and r.json()["file_size"] == UPLOAD_MB * 1024 * 1024 // 5 * 5, r.text
        world["objects"] = objects(c, world)


def test_killed_during_the_index_build_and_during_the_swap(crash_server, world):
    """A pipeline serving a first index (30 files) syncs 10 more: SIGKILL while the new index is
    being built, then (next sync) after it was renamed into place but before the database names
    it. Each time the first index is served unchanged after the restart."""
    srv, files = crash_server, world["files"]
    layout = DataLayout(srv.data_dir)
    with api(srv) as c:
        a = _pipeline(c, world["project"], "A", files[:FIRST])
        assert wait_job(c, a, c.post(f"/pipelines/{a}/sync").json()["id"])["status"] == "completed"
        first, version = rankings(c, a), _index_version(srv, a)
        _add(c, a, files[FIRST:])
    # the new index is half written: its build directory holds some of its files (the files'
    # vectors are cached since the reference pipeline's sync: the sync is quick)
    sync_and_freeze_when(srv, a, lambda: any(any(d.iterdir()) for d in layout.indexes_dir(a).glob(".build-*")))
    kill_and_restart(srv)
    with api(srv) as c:
        nothing_lost(srv, c, world, extra_pipelines=(a,))
        interrupted(c, a, newest_job(c, a)["id"], served="previous index")
        assert rankings(c, a) == first and _index_version(srv, a) == version

    def swapped_on_disk_only() -> bool:
        renamed = {d.name for d in layout.indexes_dir(a).iterdir() if not d.name.startswith(".")} - {version}
        return bool(renamed) and _index_version(srv, a) == version

    sync_and_freeze_when(srv, a, swapped_on_disk_only)
    kill_and_restart(srv)
    with api(srv) as c:
        nothing_lost(srv, c, world, extra_pipelines=(a,))
        interrupted(c, a, newest_job(c, a)["id"], served="previous index")
        assert rankings(c, a) == first and _index_version(srv, a) == version
        assert {d.name for d in layout.indexes_dir(a).iterdir()} == {version}  # the orphan index is removed
        synced_like_the_reference(c, world, a)
