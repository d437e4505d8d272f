"""The metrics package's public names are pinned, and importing it loads no ranx/numba/scipy."""

import subprocess
import sys

import llamaeval.metrics as metrics

EXPECTED = {
    "CONFIG_COLUMNS", "DEFAULT_METRICS", "MEASURES", "Measure", "parse_measure",
    "evaluate", "latency_stats", "summarize",
    "compare", "paired_t_test", "permutation_test", "cohens_d", "adjust_pvalues",
    "pareto_frontier", "cheapest_within",
    "wins_losses", "hardest_queries", "no_relevant",
    "judged", "judged_per_query",
    "gate", "GateResult", "IncomparableRunsError",
}


def test_all_is_pinned_and_resolves():
    assert set(metrics.__all__) == EXPECTED
    assert all(getattr(metrics, name, None) is not None for name in metrics.__all__)


def test_import_is_light():
    code = ("import sys, llamaeval.metrics; "
            "print(','.join(m for m in ('ranx', 'numba', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
