"""Where a retrieve request's search runs: inline on the event loop when it is the only API request
in flight, else on a worker thread (``llamaeval/server/_offload.py``)."""

from __future__ import annotations

import asyncio
import threading

import httpx

from llamaeval.server._offload import RequestLoad


def _where() -> int:
    return threading.get_ident()


def test_a_lone_request_runs_inline_on_the_loop_thread() -> None:
    load = RequestLoad()

    async def one() -> tuple[int, int]:
        load.enter()
        try:
            return threading.get_ident(), await load.run(_where)
        finally:
            load.leave()

    loop_thread, ran_on = asyncio.run(one())
    assert ran_on == loop_thread
    assert (load.inline_runs, load.thread_runs, load.in_flight) == (1, 0, 0)


def test_requests_that_arrive_together_go_to_worker_threads() -> None:
    load = RequestLoad()

    async def request() -> tuple[int, int]:
        load.enter()
        try:
            return threading.get_ident(), await load.run(_where)
        finally:
            load.leave()

    async def two() -> list[tuple[int, int]]:
        return list(await asyncio.gather(request(), request()))

    results = asyncio.run(two())
    # the first yields once before deciding, so the second has counted itself: neither runs inline
    assert all(ran_on != loop_thread for loop_thread, ran_on in results)
    assert (load.inline_runs, load.thread_runs) == (0, 2)


def test_heavy_work_never_runs_inline() -> None:
    load = RequestLoad()

    async def one() -> tuple[int, int]:
        load.enter()
        try:
            return threading.get_ident(), await load.run(_where, inline=False)
        finally:
            load.leave()

    loop_thread, ran_on = asyncio.run(one())
    assert ran_on != loop_thread
    assert load.thread_runs == 1


def test_an_exception_of_inline_work_reaches_the_caller() -> None:
    load = RequestLoad()

    def boom() -> None:
        raise ValueError("bad request")

    async def one() -> str:
        load.enter()
        try:
            await load.run(boom)
        except ValueError as exc:
            return str(exc)
        finally:
            load.leave()
        return "no error"

    assert asyncio.run(one()) == "bad request"


def test_the_server_searches_a_lone_request_inline_and_a_heavy_one_on_a_thread(tmp_path) -> None:
    import time

    from fastapi.testclient import TestClient

    from llamaeval.server import ServerConfig, create_api_key_in, create_app

    app = create_app(ServerConfig(data_dir=tmp_path / "d", heavy_query_chars=60))
    key, _ = create_api_key_in(tmp_path / "d")
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as c:
        project = c.post("/api/v1/projects", json={"name": "p"}).json()["id"]
        docs = {"a.txt": "Airships and blimps float with helium.", "b.txt": "A zeppelin is a rigid airship."}
        ids = [c.post("/api/v1/files", params={"project_id": project},
                      files={"file": (n, t.encode(), "text/plain")}).json()["id"] for n, t in docs.items()]
        pipeline = c.post("/api/v1/pipelines", json={"name": "p", "project_id": project}).json()["id"]
        c.put(f"/api/v1/pipelines/{pipeline}/files", json=[{"file_id": i} for i in ids])
        job = c.post(f"/api/v1/pipelines/{pipeline}/sync").json()
        for _ in range(600):
            job = c.get(f"/api/v1/pipelines/{pipeline}/jobs/{job['id']}").json()
            if job["status"] in ("completed", "failed"):
                break
            time.sleep(0.05)
        assert job["status"] == "completed", job
        load = app.state.llamaeval.load
        simplified = c.post(f"/api/v1/pipelines/{pipeline}/retrieve", json={"query": "rigid zeppelin", "top_k": 1})
        real = c.post(f"/cloud/api/v1/pipelines/{pipeline}/retrieve", json={"query": "rigid zeppelin"})
        assert simplified.json()["results"][0]["metadata"]["file_name"] == "b.txt"
        assert real.json()["retrieval_nodes"][0]["node"]["extra_info"]["file_name"] == "b.txt"
        assert "total;dur=" in simplified.headers["server-timing"]
        assert (load.inline_runs, load.thread_runs, load.in_flight) == (2, 0, 0)
        heavy = "which rigid airship carried mail across the Atlantic ocean in the thirties"
        assert c.post(f"/api/v1/pipelines/{pipeline}/retrieve", json={"query": heavy}).status_code == 200
        assert (load.inline_runs, load.thread_runs) == (2, 1)
        # a bad request raised inside the inline work is still a clean 4xx naming the problem
        r = c.post(f"/cloud/api/v1/pipelines/{pipeline}/retrieve", json={"query": "   "})
        assert r.status_code == 422 and "blank" in r.text
