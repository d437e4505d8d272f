"""Pooling and the judging session: every configuration's top-k pooled once, judgements saved and resumed."""

from __future__ import annotations

import io

import pandas as pd
import pytest

import llamaeval as le
from llamaeval import ConfigurationError
from llamaeval.datasets import JudgementLog, JudgingSession, pool


def _results() -> pd.DataFrame:
    """Two pipelines x two modes x top_k 3 over queries q1, q2 (q2 failed once: no documents)."""
    rankings = {
        ("p1", "fast", "q1"): ["d1", "d2", "d3"],
        ("p1", "accurate", "q1"): ["d2", "d4", "d1"],
        ("p2", "fast", "q1"): ["d5", "d1", "d6"],
        ("p2", "accurate", "q1"): ["d1", "d2", "d3"],
        ("p1", "fast", "q2"): ["d7", "d8", "d9"],
        ("p1", "accurate", "q2"): ["d9", "d7", "d10"],
        ("p2", "fast", "q2"): ["d7", "d11", "d8"],
    }
    rows = [(p, m, 3, q, r, d) for (p, m, q), docs in rankings.items() for r, d in enumerate(docs, 1)]
    rows.append(("p2", "accurate", 3, "q2", None, None))  # the failed request
    return pd.DataFrame(rows, columns=["pipeline_id", "mode", "top_k", "query_id", "rank", "doc_id"])


QUERIES = pd.DataFrame({"query_id": ["q1", "q2"], "text": ["centrifugal pump", "valve packing"]})


def test_the_pool_holds_every_configurations_top_k_once():
    results = _results()
    p = pool(results, depth=3, queries=QUERIES)
    items = p.items
    assert not items.duplicated(["query_id", "doc_id"]).any()
    for (pipe, mode, qid), group in results.dropna(subset=["doc_id"]).groupby(["pipeline_id", "mode", "query_id"]):
        pooled = set(items.loc[items["query_id"] == qid, "doc_id"])
        assert set(group["doc_id"]) <= pooled, (pipe, mode, qid)
    assert sorted(items.loc[items["query_id"] == "q1", "doc_id"]) == ["d1", "d2", "d3", "d4", "d5", "d6"]
    assert sorted(items.loc[items["query_id"] == "q2", "doc_id"]) == ["d10", "d11", "d7", "d8", "d9"]
    assert items["position"].tolist() == list(range(11))
    assert items["query_id"].tolist() == ["q1"] * 6 + ["q2"] * 5  # query by query, in query order
    assert set(items["query"]) == {"centrifugal pump", "valve packing"}
    assert len(p.configurations) == 4 and len(p.contributions) == 21
    assert p.sizes().to_dict() == {"q1": 6, "q2": 5}


def test_depth_cuts_each_ranking_and_the_order_is_seeded():
    shallow = pool(_results(), depth=1, queries=QUERIES)
    assert sorted(shallow.items.loc[shallow.items["query_id"] == "q1", "doc_id"]) == ["d1", "d2", "d5"]
    a = pool(_results(), depth=3, queries=QUERIES, seed=1)
    b = pool(_results(), depth=3, queries=QUERIES, seed=1)
    orders = {tuple(pool(_results(), depth=3, queries=QUERIES, seed=s).items["doc_id"]) for s in range(6)}
    assert a.items.equals(b.items)
    assert len(orders) > 1  # shuffled: the order depends on the seed, not on who found what
    only_q2 = pool(_results(), depth=3, queries=QUERIES, seed=1, query_ids=["q2"])
    assert only_q2.items["doc_id"].tolist() == a.items.loc[a.items["query_id"] == "q2", "doc_id"].tolist()
    with pytest.raises(ConfigurationError):
        pool(_results(), depth=0)


def test_pool_of_a_benchmark_run_uses_its_queries(run):
    p = pool(run, depth=2)
    texts = dict(zip(run.queries["query_id"], run.queries["text"]))
    assert all(texts[q] == t for q, t in zip(p.items["query_id"], p.items["query"]))
    top2 = run.results[run.results["rank"] <= 2].dropna(subset=["doc_id"])
    assert set(zip(top2["query_id"], top2["doc_id"])) == set(zip(p.items["query_id"], p.items["doc_id"]))


CORPUS = pd.DataFrame({"doc_id": [f"d{i}" for i in range(1, 12)], "title": "",
                       "text": [f"document {i} about pumps" for i in range(1, 12)]})


def test_session_saves_each_grade_at_once_and_resumes(tmp_path):
    p = pool(_results(), depth=3, queries=QUERIES)
    out = tmp_path / "judged"
    s = JudgingSession(p, out, corpus=CORPUS)
    order = p.items["doc_id"].tolist()
    assert s.current["doc_id"] == order[0] and s.current["text"].startswith("document")
    s.grade(2)
    assert (out / "qrels.txt").read_text() == f"q1 0 {order[0]} 2\n"  # on disk before the next action
    s.skip()                                  # order[1] left for later
    s.grade(0)                                # order[2]
    assert s.undo() and s.current["doc_id"] == order[2]
    s.grade(1)
    assert s.undo() and s.undo()              # the grade of order[2], then the skip of order[1]
    assert s.current["doc_id"] == order[1]
    s.grade(1)
    expected = [("q1", order[0], 2), ("q1", order[1], 1)]
    assert list(s.judgements().itertuples(index=False, name=None)) == expected

    resumed = JudgingSession(p, out, corpus=CORPUS)        # a new session on the same folder
    assert resumed.n_judged == 2 and resumed.current["doc_id"] == order[2]
    assert resumed.undo() and resumed.current["doc_id"] == order[1]   # the file's last judgement
    resumed.grade(0)
    loaded = le.load_queryset(out)
    assert sorted(loaded.qrels.itertuples(index=False, name=None)) == sorted([expected[0], ("q1", order[1], 0)])
    assert loaded.queries["query_id"].tolist() == ["q1", "q2"]
    assert loaded.queries["text"].tolist() == ["centrifugal pump", "valve packing"]


def test_skipped_documents_come_back_and_the_session_ends(tmp_path):
    p = pool(_results(), depth=1, queries=QUERIES, query_ids=["q1"])   # d1, d2, d5
    s = JudgingSession(p, tmp_path / "j", corpus=CORPUS, grades={0: "no", 1: "yes"})
    first = s.current["doc_id"]
    s.skip()
    s.grade(1)
    s.grade(0)
    assert s.current["doc_id"] == first and not s.done
    s.grade(1)
    assert s.done and s.current is None and s.n_judged == 3
    with pytest.raises(ConfigurationError):
        s.grade(1)
    with pytest.raises(ConfigurationError):
        JudgingSession(p, tmp_path / "k").grade(5)


def test_csv_judgements_load_back(tmp_path):
    p = pool(_results(), depth=1, queries=QUERIES)
    s = JudgingSession(p, tmp_path / "csv", fmt="csv")
    s.grade(1)
    s.grade(0)
    text = (tmp_path / "csv" / "qrels.csv").read_text()
    assert text.splitlines()[0] == "query_id,doc_id,relevance" and len(text.splitlines()) == 3
    loaded = le.load_queryset(tmp_path / "csv")
    assert list(loaded.qrels.itertuples(index=False)) == list(s.judgements().itertuples(index=False))
    with pytest.raises(ConfigurationError, match="already holds csv"):
        JudgementLog(tmp_path / "csv", fmt="trec")


def test_terminal_loop(tmp_path):
    from llamaeval.cli._judge import judge_loop

    p = pool(_results(), depth=1, queries=QUERIES, query_ids=["q1"])
    s = JudgingSession(p, tmp_path / "t", corpus=CORPUS)
    answers = iter(["2", "x", "s", "1", "u", "0", "q"])
    out = io.StringIO()
    given = judge_loop(s, read=lambda _prompt: next(answers), out=out)
    order = p.items["doc_id"].tolist()
    assert given == 3   # 2, 1 (undone), 0
    assert s.judgements()["doc_id"].tolist() == [order[0], order[2]]
    text = out.getvalue()
    assert "type one of 0/1/2, s, u or q" in text and "Q: centrifugal pump" in text and "resume" in text
