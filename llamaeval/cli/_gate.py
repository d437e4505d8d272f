"""``llamaeval gate NEW_RUN --baseline BASELINE_RUN``: fail a CI job when quality dropped.

    llamaeval gate runs/new --baseline runs/release --metric ndcg@10 --max-drop 0.01 --alpha 0.05 \\
        --markdown "$GITHUB_STEP_SUMMARY"

Exit codes: 0 no significant drop beyond the margin, 3 a gated configuration dropped by more
than ``--max-drop`` and the one-sided paired test says so after Holm correction, 2 the runs
cannot be paired (other queries or judgements, no shared configuration) or bad arguments,
1 another llamaeval error (a run folder missing, every request failed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_REFUSED = 2


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {text!r}")
    return value


def _margin(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--max-drop is an absolute drop in metric units >= 0, got {text!r}")
    return value


def _write_markdown(path: str | None, text: str) -> None:
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def _cmd_gate(args: argparse.Namespace) -> int:
    import warnings

    from llamaeval._errors import IncomparableRunsError
    from llamaeval.metrics import gate

    metrics = list(dict.fromkeys(m for group in (args.metric or [["ndcg@10"]]) for m in group))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # failed requests are said in the result's notes
            result = gate(args.new_run, args.baseline, metrics, max_drop=args.max_drop, alpha=args.alpha,
                          test=args.test, configurations=args.config or None, seed=args.seed)
    except IncomparableRunsError as exc:
        message = f"llamaeval gate: refused — {exc}"
        print(message, file=sys.stderr)
        _write_markdown(args.markdown, f"### ⛔ llamaeval gate refused\n\n{exc}\n")
        return EXIT_REFUSED
    print(result.summary())
    _write_markdown(args.markdown, result.markdown())
    return result.exit_code


def register(subparsers: Any) -> None:
    """Add ``gate`` to the ``llamaeval`` parser."""
    from llamaeval.cli._bench import _baseline, _metrics

    p = subparsers.add_parser(
        "gate", help="fail (exit 3) when a run lost quality against a baseline run",
        description="Pair NEW_RUN with BASELINE_RUN query by query (configurations paired by their retrieve "
                    "request, not by pipeline id) and test each shared configuration and metric for a drop "
                    "larger than --max-drop (one-sided paired test, Holm-corrected). Exit 0: no such drop; "
                    "3: a significant drop beyond the margin; 2: the runs cannot be paired (other queries or "
                    "judgements); 1: another error.")
    p.add_argument("new_run", help="folder of the run to check (llamaeval bench --out)")
    p.add_argument("--baseline", required=True, help="folder of the baseline run (e.g. the last release's)")
    p.add_argument("--metric", action="append", type=_metrics, default=None, metavar="METRIC",
                   help="metric(s) to gate, comma list or repeated (default: ndcg@10)")
    p.add_argument("--max-drop", type=_margin, default=0.01,
                   help="allowed drop in metric units, e.g. 0.01 = one nDCG point (default: 0.01)")
    p.add_argument("--alpha", type=_fraction, default=0.05, help="significance level after correction (default: 0.05)")
    p.add_argument("--test", choices=("permutation", "t-test"), default="permutation",
                   help="one-sided paired test (default: permutation = sign flips)")
    p.add_argument("--config", action="append", type=_baseline, default=[], metavar="SELECTOR",
                   help="gate only this configuration of the new run, e.g. mode=fast,top_k=10 (repeatable; "
                        "default: every configuration both runs hold)")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutation test (default: 0)")
    p.add_argument("--markdown", default=None, metavar="FILE",
                   help="also write a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")
    p.set_defaults(func=_cmd_gate)
