"""``llamaeval simulate | judge``: queries for your own documents, and pooled judging in a terminal.

    llamaeval simulate docs/ --out queries/docs-sim --n 200 --methods popular,discriminative,title
    llamaeval bench queries/docs-sim --pipeline ID --out runs/docs --modes fast,accurate
    llamaeval judge runs/docs --corpus docs/ --out judgements/docs --depth 10

``judge`` pools the run's configurations and asks for one grade per pooled document
(digit = grade, s = skip, u = undo, q = quit); every grade is appended to the qrels file
at once and the same command later resumes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from typing import Any, TextIO


def _grades(text: str) -> dict[int, str]:
    """``0,1,2`` or ``0=not relevant,1=relevant,2=highly relevant``."""
    from llamaeval._keys import DEFAULT_GRADES

    out: dict[int, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, _, label = part.partition("=")
        try:
            grade = int(key)
        except ValueError:
            raise argparse.ArgumentTypeError(f"grades are integers (optionally grade=label), got {part!r}") from None
        if not 0 <= grade <= 9:
            raise argparse.ArgumentTypeError(f"grades must be single digits 0-9 to type them, got {grade}")
        out[grade] = label.strip() or DEFAULT_GRADES.get(grade, f"grade {grade}")
    if len(out) < 2:
        raise argparse.ArgumentTypeError("give at least two grades, e.g. 0,1 or 0,1,2")
    return out


def _cmd_simulate(args: argparse.Namespace) -> int:
    from llamaeval.datasets import SimulationConfig, simulate_queries

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    config = SimulationConfig(n_queries=args.n, methods=methods, noise=args.noise, seed=args.seed,
                              length_mean=args.length_mean)
    sim = simulate_queries(args.source, config)
    folder = sim.save(args.out)
    print(f"{sim!r}\nwritten to {folder} (read it with le.load_queryset({str(folder)!r}))")
    return 0


def _show(item: dict[str, Any], position: str, out: TextIO, width: int, max_lines: int) -> None:
    print(f"\n── {position} · query {item['query_id']} ─" + "─" * 20, file=out)
    print(textwrap.fill(item["query"], width=width, initial_indent="Q: ", subsequent_indent="   "), file=out)
    print(f"document {item['doc_id']}", file=out)
    if not item["known"]:
        print("(its text is not available: give --corpus)", file=out)
        return
    text = (item["title"] + "\n\n" if item["title"] else "") + item["text"]
    lines = [line for para in text.split("\n") for line in (textwrap.wrap(para, width=width) or [""])]
    for line in lines[:max_lines]:
        print("  " + line, file=out)
    if len(lines) > max_lines:
        print(f"  … ({len(lines) - max_lines} more lines)", file=out)


def judge_loop(session: Any, *, read: Any = input, out: TextIO = sys.stdout, width: int = 90,
               max_lines: int = 24) -> int:
    """Ask for a grade per pooled document until done or ``q``; returns the number of grades given."""
    keys = "/".join(str(g) for g in sorted(session.grades))
    labels = ", ".join(f"{g} {label}" for g, label in sorted(session.grades.items()))
    print(f"{len(session)} pooled documents, {session.n_judged} judged already; saving to {session.log.path}",
          file=out)
    print(f"grades: {labels} · s skip · u undo · q quit", file=out)
    given = 0
    while not session.done:
        item = session.current
        _show(item, f"{session.n_judged + 1}/{len(session)}", out, width, max_lines)
        try:
            answer = read(f"grade [{keys}], s, u, q > ").strip().lower()
        except EOFError:
            break
        if answer == "q":
            break
        if answer == "s":
            session.skip()
        elif answer == "u":
            if not session.undo():
                print("nothing to undo", file=out)
        elif answer.isdigit() and int(answer) in session.grades:
            session.grade(int(answer))
            given += 1
        else:
            print(f"type one of {keys}, s, u or q", file=out)
    state = "all judged" if session.done else "stopped; run the same command to resume"
    print(f"\n{session.n_judged}/{len(session)} judged ({state}): {session.log.path}", file=out)
    return given


def _cmd_judge(args: argparse.Namespace) -> int:
    from llamaeval.datasets import JudgingSession, pool
    from llamaeval.datasets._sources import documents
    from llamaeval.runner import BenchmarkRun

    run = BenchmarkRun.load(args.run)
    corpus = documents(args.corpus)[1] if args.corpus else None
    pooled = pool(run, depth=args.depth, seed=args.seed)
    session = JudgingSession(pooled, args.out, corpus=corpus, grades=args.grades, fmt=args.format)
    width = max(40, min(110, shutil.get_terminal_size((100, 24)).columns - 4))
    judge_loop(session, width=width)
    return 0


def register(subparsers: Any) -> None:
    """Add ``simulate`` and ``judge`` to the ``llamaeval`` parser."""
    from llamaeval._keys import DEFAULT_GRADES

    p = subparsers.add_parser("simulate", help="generate known-item queries from documents (no judgements needed)",
                              description="Generate simulated known-item queries (Azzopardi, de Rijke & Balog, "
                                          "SIGIR 2007) from a folder of documents, a query set's corpus or a "
                                          "bundled collection; writes a query set folder (BEIR + simulation.json).")
    p.add_argument("source", help="folder of .txt/.md/.html documents, a query set folder, or a bundled name")
    p.add_argument("--out", required=True, help="folder for the generated query set")
    p.add_argument("--n", type=int, default=100, help="number of queries (default 100)")
    p.add_argument("--methods", default="popular,discriminative",
                   help="comma list of popular, discriminative, tfidf, random, title, first_sentence")
    p.add_argument("--noise", type=float, default=0.2, help="share of terms from the collection model (default 0.2)")
    p.add_argument("--length-mean", type=float, default=3.0, help="mean query length in terms (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_simulate)

    default_grades = ",".join(f"{g}={label}" for g, label in DEFAULT_GRADES.items())
    p = subparsers.add_parser("judge", help="judge the pooled results of a run in the terminal (resumable)",
                              description="Pool the top --depth documents of every configuration of a saved "
                                          "run, shuffled, and grade them one by one; judgements are appended to "
                                          "OUT/qrels.txt (or qrels.csv) as they are made, and the same command "
                                          "resumes. le.load_queryset(OUT) reads them.")
    p.add_argument("run", help="folder of a saved benchmark run (llamaeval bench --out)")
    p.add_argument("--out", required=True, help="query-set folder the judgements go to")
    p.add_argument("--corpus", default=None, help="documents to show: a folder, a query set folder or a bundled name")
    p.add_argument("--depth", type=int, default=10, help="pool depth per configuration (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffled order (default 0)")
    p.add_argument("--grades", type=_grades, default=dict(DEFAULT_GRADES),
                   help=f"grade scale, e.g. 0,1 or {default_grades!r} (default)")
    p.add_argument("--format", choices=("trec", "csv"), default=None, help="qrels format (default trec, or "
                                                                            "what OUT already holds)")
    p.set_defaults(func=_cmd_judge)
