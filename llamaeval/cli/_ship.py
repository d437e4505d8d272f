"""``llamaeval ship RUN_DIR --pipeline ID [--yes]``: write the recommended configuration of a
saved run as the pipeline's ``preset_retrieval_parameters``.

Without ``--yes`` it prints the recommendation and the difference to the pipeline's presets
and writes nothing. Exit codes: 0 ok (shown or written), 1 a llamaeval error (via the
dispatcher), 2 bad usage.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from llamaeval.cli._bench import _add_service, _client, _metrics, _plain_warnings

LATENCY_STATS = ("p50", "p90", "p95", "p99", "mean")


def _metric(text: str) -> str:
    names = _metrics(text)
    if len(names) != 1:
        raise argparse.ArgumentTypeError(f"give one metric, e.g. ndcg@10; got {text!r}")
    return names[0]


def _within(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _cmd_ship(args: argparse.Namespace) -> int:
    from llamaeval.metrics._apply import apply_recommendation
    from llamaeval.runner import BenchmarkRun

    run = BenchmarkRun.load(args.run)
    rec = run.recommend(args.metric, args.within, args.latency)
    print(str(rec))
    print()
    with _client(args) as lc:
        plan = apply_recommendation(rec, lc, args.pipeline, dry_run=not args.yes)
    print(str(plan))
    return 0


def register(subparsers: Any) -> None:
    """Add ``ship`` to the ``llamaeval`` parser."""
    p = subparsers.add_parser(
        "ship", help="write a run's recommended configuration as a pipeline's preset retrieval parameters",
        description="Recommend the configuration to ship from a saved run (the cheapest within --within of the "
                    "best by --metric) and show how the pipeline's preset_retrieval_parameters change so that a "
                    "retrieve without parameters sends it; with --yes, write them. The simplified API has no "
                    "presets: it prints the retrieve arguments to pass instead.")
    p.add_argument("run", help="folder of a saved benchmark run")
    p.add_argument("--pipeline", required=True, metavar="ID", help="pipeline to write the presets to")
    p.add_argument("--yes", action="store_true", help="write the presets (default: show the change, write nothing)")
    p.add_argument("--metric", type=_metric, default="ndcg@10", help="quality metric (default: ndcg@10)")
    p.add_argument("--within", type=_within, default=0.01,
                   help="how far below the best metric the choice may be, absolute (default: 0.01)")
    p.add_argument("--latency", choices=LATENCY_STATS, default="p50",
                   help="client latency statistic the choice minimises (default: p50)")
    _add_service(p)
    p.set_defaults(func=_plain_warnings(_cmd_ship))
