"""Where a retrieve request's search runs: inline on the event loop when it is the only API request
in flight, else on a worker thread (``llamaeval/server/_offload.py``)."""

from __future__ import annotations

import asyncio
import threading


from llamaeval.server._offload import ACTIVE_WINDOW_S, RequestLoad


def _where() -> int:
    return threading.get_ident()


async def _request(load: RequestLoad, work=_where, inline: bool = True,
                   connection: object = ("127.0.0.1", 50000)) -> tuple[int, object]:
    """One request as the gatekeeper and a retrieve route make it: (the loop's thread, what
    ``work`` returned or the message of what it raised)."""
    load.enter(connection)
    try:
        return threading.get_ident(), await load.run(work, inline=inline)
    except ValueError as exc:
        return threading.get_ident(), str(exc)
    finally:
        load.leave()


def test_a_lone_request_runs_inline_on_the_loop_thread() -> None:
    load = RequestLoad()
    loop_thread, ran_on = asyncio.run(_request(load))
    assert ran_on == loop_thread
    assert (load.inline_runs, load.thread_runs, load.in_flight) == (1, 0, 0)


def test_requests_that_arrive_together_go_to_worker_threads() -> None:
    load = RequestLoad()

    async def two() -> list[tuple[int, object]]:
        return list(await asyncio.gather(_request(load), _request(load)))

    results = asyncio.run(two())
    # the first yields once before deciding, so the second has counted itself: neither runs inline
    assert all(ran_on != loop_thread for loop_thread, ran_on in results)
    assert (load.inline_runs, load.thread_runs, load.in_flight) == (0, 2, 0)


def test_two_clients_taking_turns_go_to_worker_threads_until_one_is_quiet() -> None:
    now = [100.0]
    load = RequestLoad(clock=lambda: now[0])
    a, b = ("127.0.0.1", 50001), ("127.0.0.1", 50002)
    loop_thread, ran_on = asyncio.run(_request(load, connection=a))
    assert ran_on == loop_thread  # one client so far: inline
    now[0] += 0.01
    # b's request was held up by a's inline search and starts right after it: never both in
    # flight, yet two clients are active, so b's search (and a's next) goes to a thread
    for conn in (b, a):
        loop_thread, ran_on = asyncio.run(_request(load, connection=conn))
        assert ran_on != loop_thread
        now[0] += 0.01
    assert (load.inline_runs, load.thread_runs) == (1, 2)
    now[0] += ACTIVE_WINDOW_S + 0.5  # b went quiet: a alone again
    loop_thread, ran_on = asyncio.run(_request(load, connection=a))
    assert ran_on == loop_thread and load.inline_runs == 2


def test_a_request_from_an_unknown_connection_never_runs_inline() -> None:
    load = RequestLoad()
    loop_thread, ran_on = asyncio.run(_request(load, connection=None))  # e.g. a Unix socket: no client address
    assert ran_on != loop_thread and load.thread_runs == 1


def test_heavy_work_never_runs_inline() -> None:
    load = RequestLoad()
    loop_thread, ran_on = asyncio.run(_request(load, inline=False))
    assert ran_on != loop_thread
    assert load.thread_runs == 1


def test_an_exception_of_inline_work_reaches_the_caller() -> None:
    def boom() -> None:
        raise ValueError("bad request")

    load = RequestLoad()
    assert asyncio.run(_request(load, boom))[1] == "bad request"
    assert (load.inline_runs, load.in_flight) == (1, 0)


def test_the_server_searches_a_lone_request_inline_and_a_heavy_one_on_a_thread(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from llamaeval.server import ServerConfig, create_api_key_in, create_app
    from server_helpers import synced_pipeline

    app = create_app(ServerConfig(data_dir=tmp_path / "d", heavy_query_chars=60))
    key, _ = create_api_key_in(tmp_path / "d")
    with TestClient(app, base_url="http://testserver/api/v1", headers={"Authorization": f"Bearer {key}"}) as c:
        pipeline = synced_pipeline(c, {"a.txt": "Airships and blimps float with helium.",
                                       "b.txt": "A zeppelin is a rigid airship."})
        real_url = f"http://testserver/cloud/api/v1/pipelines/{pipeline}/retrieve"
        load = app.state.llamaeval.load
        simplified = c.post(f"/pipelines/{pipeline}/retrieve", json={"query": "rigid zeppelin", "top_k": 1})
        real = c.post(real_url, json={"query": "rigid zeppelin"})
        assert simplified.json()["results"][0]["metadata"]["file_name"] == "b.txt"
        assert real.json()["retrieval_nodes"][0]["node"]["extra_info"]["file_name"] == "b.txt"
        assert "total;dur=" in simplified.headers["server-timing"]
        assert (load.inline_runs, load.thread_runs, load.in_flight) == (2, 0, 0)
        heavy = "which rigid airship carried mail across the Atlantic ocean in the thirties"
        assert c.post(f"/pipelines/{pipeline}/retrieve", json={"query": heavy}).status_code == 200
        assert (load.inline_runs, load.thread_runs) == (2, 1)
        # a bad request raised inside the inline work is still a clean 4xx naming the problem
        r = c.post(real_url, json={"query": "   "})
        assert r.status_code == 422 and "blank" in r.text
