"""Write docs/figure.png (the README figure) from a saved benchmark run.

    llamaeval demo --out reports/demo          # writes reports/demo/run
    python docs/make_figure.py reports/demo/run docs/figure.png
"""

from __future__ import annotations

import sys
from pathlib import Path

from llamaeval import plots
from llamaeval.runner import BenchmarkRun


def main(run_dir: str, out: str = "docs/figure.png") -> Path:
    run = BenchmarkRun.load(run_dir)
    fig = plots.overview(run, "ndcg@10")
    qs = run.manifest.get("queryset", {})
    name = qs.get("name") if isinstance(qs, dict) else qs
    n = run.requests["query_id"].nunique()
    fig.suptitle(f"{name}: {n} judged queries, {len(run.configurations)} configurations (mode × top_k)")
    path = Path(out)
    fig.savefig(path, dpi=90)
    return path


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
