"""Runner test fixtures: a fake API behind httpx.MockTransport and a tiny hand-checkable query set."""

from __future__ import annotations

import pandas as pd
import pytest

from _runner_fake import FakeCloud


@pytest.fixture()
def fake() -> FakeCloud:
    return FakeCloud(pipelines=("pipe-a", "pipe-b"))


@pytest.fixture()
def tiny_queryset():
    """6 queries (q6 unjudged), judgements over the fake's documents D0..D11."""
    from llamaeval import QuerySet

    queries = pd.DataFrame({"query_id": [f"q{i}" for i in range(1, 7)],
                            "text": ["wing flutter", "boundary layer", "heat transfer",
                                     "shock waves", "turbulent flow", "unjudged query"]})
    qrels = pd.DataFrame({"query_id": ["q1", "q1", "q2", "q3", "q4", "q5", "q5"],
                          "doc_id": ["D0", "D3", "D1", "D7", "D2", "D5", "D11"],
                          "relevance": [1, 2, 1, 1, 1, 1, 1]})
    return QuerySet("tiny", queries, qrels)
