"""The dashboard shows the recommendation's honest estimate, as the report does."""

from __future__ import annotations

import numpy as np



def test_dashboard_recommendation_says_what_to_expect(constructed):
    from llamaeval import widgets

    c = constructed
    run = c.make_run(c.draw_ranks(np.random.default_rng(11), 6, 30), latency_s=[0.01 * (i + 1) for i in range(6)])
    dash = widgets.dashboard(run)
    rec = run.recommend("ndcg@10")
    box = dash.recommendation.value
    assert "data-le='honest-estimate'" in box and f"Expect about {rec.honest.estimate:.3f}" in box
    dash.modes.value = ("cfg00",)  # one configuration: nothing chosen, nothing to correct
    assert "nothing was chosen" in dash.recommendation.value
