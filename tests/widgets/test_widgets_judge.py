"""The judging widget, driven like a judge would: buttons, keys, undo, resume from the saved file."""

from __future__ import annotations

import pandas as pd
import pytest

import llamaeval as le
from llamaeval import widgets
from llamaeval.datasets import pool
from llamaeval.widgets._judge import highlight, query_terms

RESULTS = pd.DataFrame({
    "pipeline_id": "p", "mode": ["fast"] * 3 + ["accurate"] * 3, "top_k": 3, "query_id": "q1",
    "rank": [1, 2, 3] * 2, "doc_id": ["a", "b", "c", "b", "d", "a"]})
QUERIES = pd.DataFrame({"query_id": ["q1"], "text": ["pumping stations"]})
CORPUS = pd.DataFrame({"doc_id": list("abcd"), "title": ["Pump stations", "", "", ""],
                       "text": ["A pumping station lifts water <fast>.", "Valves.", "Pipes.", "Stations pump."]})


@pytest.fixture()
def the_pool():
    return pool(RESULTS, depth=3, queries=QUERIES, seed=0)


def test_click_grade_undo_and_resume_write_the_expected_qrels(the_pool, tmp_path):
    out = tmp_path / "judged"
    judge = widgets.judge(the_pool, out, corpus=CORPUS)
    order = the_pool.items["doc_id"].tolist()
    assert judge.current["doc_id"] == order[0]
    assert "<mark>pumping</mark> <mark>stations</mark>" in judge.header.value and f"data-doc='{order[0]}'" in judge.passage.value
    assert judge.progress.max == 4 and judge.progress.value == 0
    judge.buttons[2].click()                 # a judge clicks "2 · highly relevant"
    judge.buttons[0].click()
    judge.undo_button.click()                # ... takes the 0 back
    assert judge.current["doc_id"] == order[1] and judge.progress.value == 1
    judge.keys.value = "1"                   # typed in the keys box
    assert judge.keys.value == ""            # the box empties itself
    judge.skip_button.click()                # order[2] left for later
    assert (out / "qrels.txt").read_text() == f"q1 0 {order[0]} 2\nq1 0 {order[1]} 1\n"
    assert "2 / 4 judged" in judge.status.value and "1 skipped" in judge.status.value

    again = widgets.judge(the_pool, out, corpus=CORPUS)      # resume from the saved file
    assert again.progress.value == 2 and again.current["doc_id"] == order[2]
    again.keys.value = "0s"                  # grade order[2], skip order[3]
    again.grade(1)                           # order[3] again: nothing else left
    assert again.done and "All documents of the pool are judged" in again.header.value
    assert all(b.disabled for b in again.buttons.values())
    expected = {(order[0], 2), (order[1], 1), (order[2], 0), (order[3], 1)}
    loaded = le.load_queryset(out)
    assert set(zip(loaded.qrels["doc_id"], loaded.qrels["relevance"])) == expected
    assert set(zip(again.judgements()["doc_id"], again.judgements()["relevance"])) == expected


def test_passage_highlights_query_terms_and_escapes(the_pool, tmp_path):
    judge = widgets.judge(the_pool, tmp_path / "j", corpus=CORPUS, grades={0: "no", 1: "yes"})
    while judge.current["doc_id"] != "a":
        judge.skip()
    html = judge.passage.value
    assert "<mark>Pump</mark> <mark>stations</mark>" in html            # title
    assert "A <mark>pumping</mark> <mark>station</mark> lifts" in html   # stems match
    assert "&lt;fast&gt;" in html and "<fast>" not in html
    assert sorted(judge.buttons) == [0, 1]


def test_highlight_helpers():
    terms = query_terms("the valves of pumps")
    assert highlight("Valve <b> pumped", terms).startswith("<mark>Valve</mark> &lt;b&gt;")


def test_unknown_document_text_says_so(the_pool, tmp_path):
    judge = widgets.judge(the_pool, tmp_path / "j")
    assert "not available" in judge.passage.value
