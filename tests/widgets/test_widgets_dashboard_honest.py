"""The dashboard shows the recommendation's honest estimate, as the report does."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np


def _constructed():
    name = "llamaeval_tests_constructed_runs"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "metrics" / "_constructed_runs.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_dashboard_recommendation_says_what_to_expect():
    from llamaeval import widgets

    c = _constructed()
    run = c.make_run(c.draw_ranks(np.random.default_rng(11), 6, 30), latency_s=[0.01 * (i + 1) for i in range(6)])
    dash = widgets.dashboard(run)
    rec = run.recommend("ndcg@10")
    box = dash.recommendation.value
    assert "data-le='honest-estimate'" in box and f"Expect about {rec.honest.estimate:.3f}" in box
    dash.modes.value = ("cfg00",)  # one configuration: nothing chosen, nothing to correct
    assert "nothing was chosen" in dash.recommendation.value
