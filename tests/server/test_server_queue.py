"""The PostgreSQL job queue: claims are exclusive, one running job per pipeline, an expired lease is
claimed again (attempts counted), a lost lease cannot be renewed, cancels are flags."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from llamaeval._errors import ConfigurationError
from llamaeval.server._postgres import PostgresStorage
from llamaeval.server._queue import JobQueue, lease_seconds
from llamaeval.server._storage import Job, Pipeline, utc_now


@pytest.fixture()
def db(new_database):
    url = new_database()
    storage = PostgresStorage(url)
    account = storage.create_account("a")
    project = storage.create_project(account.id, "p")
    now = utc_now()
    for pid in ("p1", "p2"):
        storage.create_pipeline(Pipeline(id=pid, account_id=account.id, project_id=project.id, name=pid,
                                         status="idle", sync_interval=None, retrieval_config={}, chunking_config={},
                                         embedding_model="m", created_at=now, updated_at=now))
    yield url, storage, account.id
    storage.close()


def _job(storage: PostgresStorage, account: str, pipeline: str, jid: str) -> None:
    storage.create_job(Job(id=jid, pipeline_id=pipeline, account_id=account, status="pending", created_at=utc_now()))


def test_claims_are_exclusive_and_one_job_per_pipeline_runs(db):
    url, storage, account = db
    for jid, pipeline in (("a", "p1"), ("b", "p1"), ("c", "p2")):
        _job(storage, account, pipeline, jid)
    queues = [JobQueue(url, f"w{n}", lease_s=30) for n in range(4)]
    try:
        claimed: list = []
        barrier = threading.Barrier(len(queues))

        def take(q: JobQueue) -> None:
            barrier.wait()
            claimed.append((q, q.claim()))

        threads = [threading.Thread(target=take, args=(q,)) for q in queues]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = sorted(c[0] for _, c in claimed if c is not None)
        assert got == ["a", "c"]  # never the same job twice, never p1's second job while "a" runs
        assert storage.get_job("a").status == "running"
        owner = next(q for q, c in claimed if c and c[0] == "a")
        other = next(q for q in queues if q is not owner)
        assert owner.renew("a") and not other.renew("a")
        storage.update_job("a", status="completed")
        owner.release("a")
        assert other.claim() == ("b", 1)  # p1's next job once "a" is done
    finally:
        for q in queues:
            q.close()


def test_an_expired_lease_is_claimed_again_and_cancels_are_flags(db):
    url, storage, account = db
    _job(storage, account, "p1", "j")
    dead, alive = JobQueue(url, "dead", lease_s=0.5), JobQueue(url, "alive", lease_s=30)
    try:
        assert dead.claim() == ("j", 1)
        assert alive.claim() is None  # its lease is live
        time.sleep(0.7)  # the dead worker never renews
        assert alive.claim() == ("j", 2)
        assert not dead.renew("j")  # the job is no longer the dead worker's
        assert alive.renew("j") and not alive.cancel_requested("j")
        alive.request_cancel(["j"])
        assert alive.cancel_requested("j")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT lease_owner, attempts FROM jobs WHERE id = 'j'").fetchone() == ("alive", 2)
    finally:
        dead.close()
        alive.close()


def test_lease_setting(monkeypatch):
    monkeypatch.setenv("LLAMAEVAL_JOB_LEASE_S", "2.5")
    assert lease_seconds() == 2.5
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv("LLAMAEVAL_JOB_LEASE_S", bad)
        with pytest.raises(ConfigurationError, match="LLAMAEVAL_JOB_LEASE_S"):
            lease_seconds()
