"""How far to trust simulated known-item queries and pooled judging: rankings of a grid by
real judgements vs. by simulated queries, and Judged@10 vs. pool depth.

    python benchmarks/simulated_trust.py [--collections adi,med,cisi,cranfield,scifact]
        [--cap scifact=1500] [--per-method 50] [--work /tmp/llamaeval-trust] [--analyze-only]
        [--out benchmarks/results/simulated.md]

For each collection, on one embedded local server:

1. three pipelines over the same corpus, differing in the engine's fusion weight through
   ``retrieval_config`` (``hybrid`` = default dense_weight 0.5, ``bm25`` = 0, ``dense`` = 1);
   x modes fast / accurate / advanced = 9 systems; x top_k 5, 10, 20 (+100 for the
   target check) = the grid;
2. simulated known-item queries from the corpus alone (``simulate_queries``: popular,
   discriminative, title, first_sentence; ``--per-method`` each, seed 0);
3. one benchmark run over the real judged queries and the simulated ones together
   (``share_k``: one request per pipeline, mode and query at top_k 100);
4. rank the configurations by nDCG@10 with the real judgements and with the simulated
   queries' targets: Kendall's tau-b, whether the winners agree, the real nDCG@10 lost by
   shipping the simulated winner, bootstrap (1,000 resamples of both query sets) of the
   tau and of the winner agreement, and the real queries' own split-half tau as a ceiling;
5. pooling: the top-d of the 9 systems (top_k 100 runs) for d in 1, 3, 5, 10, 20 taken
   as judged (what a judge would see), Judged@10 of each system when pooled, when left
   out of the pool, and when its whole pipeline is left out; pool size per query; the
   share of the known relevant documents in the pool; and Kendall's tau between the
   ranking under pool-restricted judgements and under the full judgements.

Runs are saved under ``--work`` so ``--analyze-only`` redoes the tables without a server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

VARIANTS = {"hybrid": {}, "bm25": {"dense_weight": 0.0}, "dense": {"dense_weight": 1.0}}
MODES = ("fast", "accurate", "advanced")
TOP_K = (5, 10, 20, 100)
GRID_K = (5, 10, 20)
METHODS = ("popular", "discriminative", "title", "first_sentence")
DEPTHS = (1, 3, 5, 10, 20)
METRIC = "ndcg@10"
B = 1000
READING_START, READING_END = "<!-- reading -->", "<!-- /reading -->"


def load_collection(name: str, cap: int | None, seed: int = 0):
    import llamaeval as le

    qs = le.load_queryset(name)
    if cap is None or qs.corpus is None or len(qs.corpus) <= cap:
        return qs, None
    judged = qs.judged_queries()["query_id"]
    relevant = set(qs.qrels.loc[qs.qrels["query_id"].isin(judged), "doc_id"])
    others = sorted(set(qs.corpus["doc_id"]) - relevant)
    rng = np.random.default_rng(seed)
    fill = rng.choice(others, size=max(0, cap - len(relevant)), replace=False).tolist()
    keep = sorted(relevant) + fill
    note = (f"capped at {len(keep)} of {len(qs.corpus)} documents: the {len(relevant)} judged relevant to a test "
            f"query + {len(fill)} drawn at random (seed {seed})")
    return qs.subset(doc_ids=keep, name=name), note


def combined(real, sim):
    from llamaeval import QuerySet

    judged = real.judged_queries()
    queries = pd.concat([judged, sim.queries], ignore_index=True)
    qrels = pd.concat([real.qrels, sim.qrels], ignore_index=True)
    return QuerySet(f"{real.name}+sim", queries, qrels)


def run_collection(name: str, cap: int | None, per_method: int, work: Path, srv, lc) -> dict:
    import llamaeval as le
    from llamaeval.datasets import SimulationConfig, simulate_queries

    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    real, note = load_collection(name, cap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = simulate_queries(real, SimulationConfig(n_queries=per_method * len(METHODS), methods=METHODS, seed=0))
    sim.save(folder / "simulated")
    timings = {}
    pipelines = {}
    for variant, config in VARIANTS.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipelines[variant] = le.ingest(lc, real, project="trust", pipeline=f"{name}-{variant}", progress=False,
                                           retrieval_config=config or None)
        timings[f"ingest_{variant}_s"] = round(time.perf_counter() - t0, 1)
        print(f"  {name}: pipeline {variant} ready in {timings[f'ingest_{variant}_s']} s", flush=True)
    both = combined(real, sim)
    t0 = time.perf_counter()
    run = le.benchmark(lc, list(pipelines.values()), both, modes=list(MODES), top_k=list(TOP_K), concurrency=4,
                       config=le.BenchmarkConfig(share_k=True, progress=False, warmup=2))
    timings["benchmark_s"] = round(time.perf_counter() - t0, 1)
    run.save(folder / "run")
    info = {"name": name, "cap_note": note, "n_docs": int(len(real.corpus)),
            "n_real": int(len(real.judged_queries())), "n_sim": int(len(sim.queries)),
            "sim_methods": sim.manifest["methods"], "sim_config": sim.manifest["config"],
            "pipelines": {v: p for v, p in pipelines.items()}, "timings": timings,
            "n_failed": int(len(run.failures)) if hasattr(run, "failures") else None}
    (folder / "info.json").write_text(json.dumps(info, indent=2))
    print(f"  {name}: benchmark in {timings['benchmark_s']} s", flush=True)
    return info


# ---------------------------------------------------------------------------- analysis
def per_query(results: pd.DataFrame, qrels: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """configs (rows: 'variant/mode@k') x queries matrix of a metric."""
    from llamaeval import metrics

    long = metrics.evaluate(results, qrels, [metric], per_query=True)
    long["config"] = long["pipeline_id"] + "/" + long["mode"] + "@" + long["top_k"].astype(str)
    return long.pivot(index="config", columns="query_id", values="value")


def tau(a: pd.Series, b: pd.Series) -> float:
    t = kendalltau(a.loc[b.index].to_numpy(), b.to_numpy()).statistic
    return float(t) if np.isfinite(t) else float("nan")


def bootstrap(real_m: pd.DataFrame, sim_m: pd.DataFrame, rng: np.random.Generator) -> dict:
    r, s = real_m.to_numpy(), sim_m.to_numpy()
    taus, agree = [], 0
    for _ in range(B):
        rr = r[:, rng.integers(0, r.shape[1], r.shape[1])].mean(axis=1)
        ss = s[:, rng.integers(0, s.shape[1], s.shape[1])].mean(axis=1)
        t = kendalltau(rr, ss).statistic
        taus.append(t if np.isfinite(t) else 0.0)
        agree += int(np.argmax(rr) == np.argmax(ss))
    half = []
    n = r.shape[1]
    for _ in range(200):
        perm = rng.permutation(n)
        a, b = r[:, perm[: n // 2]].mean(axis=1), r[:, perm[n // 2:]].mean(axis=1)
        t = kendalltau(a, b).statistic
        half.append(t if np.isfinite(t) else 0.0)
    return {"tau_lo": float(np.percentile(taus, 5)), "tau_hi": float(np.percentile(taus, 95)),
            "p_same_winner": agree / B, "real_split_half_tau": float(np.mean(half))}


def trust_rows(name: str, real_m: pd.DataFrame, sim_m: pd.DataFrame, rng: np.random.Generator,
               label: str) -> dict:
    real_mean, sim_mean = real_m.mean(axis=1), sim_m.mean(axis=1)
    real_win, sim_win = real_mean.idxmax(), sim_mean.idxmax()
    boot = bootstrap(real_m, sim_m, rng)
    return {"collection": name, "set": label, "configs": len(real_mean), "tau": tau(real_mean, sim_mean),
            **boot, "real_winner": real_win, "sim_winner": sim_win, "same_winner": real_win == sim_win,
            "real_best": float(real_mean.max()), "real_of_sim_winner": float(real_mean[sim_win]),
            "loss": float(real_mean.max() - real_mean[sim_win])}


def pooling_rows(name: str, results: pd.DataFrame, qrels: pd.DataFrame) -> list[dict]:
    from llamaeval import metrics
    from llamaeval.datasets import pool

    sys100 = results[results["top_k"] == 100]
    systems = sys100[["pipeline_id", "mode"]].drop_duplicates().itertuples(index=False, name=None)
    systems = list(systems)
    full_rank = metrics.evaluate(sys100, qrels, [METRIC]).assign(
        key=lambda t: t["pipeline_id"] + "/" + t["mode"]).set_index("key")[METRIC]
    relevant = qrels[qrels["relevance"] > 0]
    rows = []
    for depth in DEPTHS:
        p = pool(sys100, depth=depth)
        pooled = p.items[["query_id", "doc_id"]]
        judged_all = metrics.judged(sys100, pooled, k=10)
        in_pool = set(zip(pooled["query_id"], pooled["doc_id"]))
        pool_recall = float(np.mean([(q, d) in in_pool for q, d in zip(relevant["query_id"], relevant["doc_id"])]))
        loo, lopo = [], []
        for variant, mode in systems:
            mine = (sys100["pipeline_id"] == variant) & (sys100["mode"] == mode)
            others = pool(sys100[~mine], depth=depth).items
            loo.append(metrics.judged(sys100[mine], others, k=10)["judged@10"].iloc[0])
            other_pipes = pool(sys100[sys100["pipeline_id"] != variant], depth=depth).items
            lopo.append(metrics.judged(sys100[mine], other_pipes, k=10)["judged@10"].iloc[0])
        # the judgements a judge of this pool would give: the official grade of each pooled document
        # (0 when unjudged); relevant documents outside the pool go unseen. Every query keeps its pool.
        pooled_qrels = pooled.merge(qrels, on=["query_id", "doc_id"], how="left").fillna({"relevance": 0})
        if (pooled_qrels["relevance"] > 0).any():
            pooled_rank = metrics.evaluate(sys100, pooled_qrels, [METRIC]).assign(
                key=lambda t: t["pipeline_id"] + "/" + t["mode"]).set_index("key")[METRIC]
            t_pool = tau(full_rank, pooled_rank)
        else:
            t_pool = float("nan")
        rows.append({"collection": name, "depth": depth, "pool_docs_per_query": float(p.sizes().mean()),
                     "pool_recall": pool_recall, "judged10_pooled": float(judged_all["judged@10"].mean()),
                     "judged10_left_out": float(np.mean(loo)), "judged10_pipeline_left_out": float(np.mean(lopo)),
                     "tau_pooled_vs_full": t_pool})
    return rows


def target_rows(name: str, results: pd.DataFrame, sim_qrels: pd.DataFrame, details: pd.DataFrame) -> list[dict]:
    fast = results[(results["pipeline_id"] == "hybrid") & (results["mode"] == "fast") & (results["top_k"] == 100)]
    hits = fast.merge(sim_qrels, on=["query_id", "doc_id"])
    best = hits.groupby("query_id")["rank"].min()
    rank = details.set_index("query_id")["method"].to_frame().join(best)
    rows = []
    for method, group in [("all", rank), *rank.groupby("method", sort=False)]:
        ranks = pd.to_numeric(group["rank"], errors="coerce").astype(float)   # NaN: not in the top 100
        rows.append({"collection": name, "method": method, "queries": len(group),
                     "in_top100": float(ranks.notna().mean()),
                     "in_top10": float((ranks.fillna(np.inf) <= 10).mean()),
                     "mrr": float((1.0 / ranks).fillna(0.0).mean())})
    return rows


def analyze(work: Path, names: list[str]) -> dict:
    import llamaeval as le
    from llamaeval.datasets import SimulatedQuerySet

    rng = np.random.default_rng(0)
    trust, pooling, targets, infos, per_method, questions = [], [], [], [], [], []
    for name in names:
        folder = work / name
        info = json.loads((folder / "info.json").read_text())
        infos.append(info)
        run = le.BenchmarkRun.load(folder / "run")
        sim = SimulatedQuerySet.load(folder / "simulated")
        variant_of = {p: v for v, p in info["pipelines"].items()}
        results = run.results.assign(pipeline_id=run.results["pipeline_id"].map(variant_of))
        sim_ids = set(sim.queries["query_id"])
        real_q = run.qrels[~run.qrels["query_id"].isin(sim_ids)]
        sim_q = run.qrels[run.qrels["query_id"].isin(sim_ids)]
        grid = results[results["top_k"].isin(GRID_K)]
        real_m, sim_m = per_query(grid, real_q), per_query(grid, sim_q)
        systems10 = [c for c in real_m.index if c.endswith("@10")]
        trust.append(trust_rows(name, real_m.loc[systems10], sim_m.loc[systems10], rng, "9 systems @10"))
        trust.append(trust_rows(name, real_m, sim_m, rng, "grid (x top_k 5/10/20)"))
        for method in METHODS:
            ids = sim.details.loc[sim.details["method"] == method, "query_id"]
            if len(ids) == 0:
                continue
            m = sim_m.loc[systems10, [c for c in sim_m.columns if c in set(ids)]]
            row = trust_rows(name, real_m.loc[systems10], m, rng, method)
            per_method.append(row)
        for label, rows in (("modes, hybrid pipeline @10", [f"hybrid/{m}@10" for m in MODES]),
                            ("fusion weight, fast @10", [f"{v}/fast@10" for v in VARIANTS]),
                            ("fusion weight, accurate @10", [f"{v}/accurate@10" for v in VARIANTS])):
            questions.append(trust_rows(name, real_m.loc[rows], sim_m.loc[rows], rng, label))
        real_ids = set(real_q["query_id"])
        pooling.extend(pooling_rows(name, results[results["query_id"].isin(real_ids)], real_q))
        targets.extend(target_rows(name, results, sim_q, sim.details))
        print(f"  analyzed {name}", flush=True)
    return {"trust": pd.DataFrame(trust), "per_method": pd.DataFrame(per_method), "pooling": pd.DataFrame(pooling),
            "targets": pd.DataFrame(targets), "questions": pd.DataFrame(questions), "infos": infos}


def md_table(frame: pd.DataFrame, floats: str = "{:.3f}") -> str:
    def fmt(v):
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if isinstance(v, (float, np.floating)):
            return "–" if not np.isfinite(v) else floats.format(v)
        return str(v)
    head = "| " + " | ".join(frame.columns) + " |\n|" + "|".join("---" for _ in frame.columns) + "|\n"
    return head + "".join("| " + " | ".join(fmt(v) for v in row) + " |\n" for row in frame.itertuples(index=False))


def write_report(out: Path, res: dict, argv: list[str], started: str, machine: str) -> None:
    trust, pooling, targets, per_method = res["trust"], res["pooling"], res["targets"], res["per_method"]
    main = trust[trust["set"] == "9 systems @10"]
    grid = trust[trust["set"] != "9 systems @10"]
    lines = [f"# Simulated queries and pooled judging: how far to trust them\n",
             f"`python benchmarks/simulated_trust.py {' '.join(argv)}` — {started}; {machine}.\n"]
    lines.append("Collections (real judged queries / simulated queries / documents): " + "; ".join(
        f"**{i['name']}** {i['n_real']} / {i['n_sim']} / {i['n_docs']}" + (f" ({i['cap_note']})" if i["cap_note"]
                                                                          else "") for i in res["infos"]) + ".\n")
    lines.append(
        "Systems: 3 pipelines over the same corpus that differ only in `retrieval_config.dense_weight` "
        "(`hybrid` 0.5 = default, `bm25` 0, `dense` 1) × modes fast / accurate / advanced = 9 systems; the grid "
        "adds top_k 5 / 10 / 20 (27 configurations). Simulated queries: `simulate_queries(corpus, "
        "SimulationConfig(methods=(popular, discriminative, title, first_sentence), noise=0.2, length 2–6 "
        "(Poisson mean 3), seed=0))`, one target document each; a method with no candidate (med has no titles) "
        "is dropped. Every configuration is ranked by mean nDCG@10: with the real judgements over the real "
        "queries, and with the targets over the simulated queries.\n")
    lines.append("## Ranking the configurations: real judgements vs simulated queries\n")
    cols = ["collection", "configs", "tau", "tau_lo", "tau_hi", "real_split_half_tau", "same_winner",
            "p_same_winner", "real_winner", "sim_winner", "real_best", "real_of_sim_winner", "loss"]
    lines.append(md_table(main[cols]))
    lines.append(
        "\n`tau`: Kendall's tau-b between the two orderings of the 9 systems at top_k 10; `tau_lo`–`tau_hi`: 5–95% "
        "of its bootstrap (both query sets resampled, 1,000 times); `real_split_half_tau`: the tau between two "
        "random halves of the *real* queries (mean of 200 splits) — how stable the real ordering itself is, a "
        "ceiling of sorts; `same_winner`: is the simulated winner the real winner; `p_same_winner`: how often "
        "they agree over the bootstrap; `loss`: real nDCG@10 of the real winner minus that of the simulated "
        "winner (what shipping the simulated choice costs).\n")
    n_same = int(main["same_winner"].sum())
    lines.append(f"Same winner on {n_same} of {len(main)} collections; mean tau {main['tau'].mean():.2f}; "
                 f"mean loss {main['loss'].mean():.3f} nDCG@10.\n")
    lines.append("### Whole grid (27 configurations: the 9 systems × top_k 5, 10, 20)\n")
    lines.append(md_table(grid[["collection", "configs", "tau", "tau_lo", "tau_hi", "real_split_half_tau",
                                "same_winner", "p_same_winner", "loss"]]))
    lines.append("\nWithin one system, nDCG@10 can only grow with top_k up to 10, whoever judges, so the grid's "
                 "tau is inflated by those easy pairs; read the 9-system table for the comparisons that matter.\n")
    lines.append("### The choices a user makes (3 configurations each)\n")
    q = res["questions"]
    lines.append(md_table(q[["collection", "set", "tau", "same_winner", "p_same_winner", "real_winner",
                             "sim_winner", "loss"]].rename(columns={"set": "choice"})))
    lines.append("\n")
    lines.append("### By simulation method (9 systems @10)\n")
    lines.append(md_table(per_method[["collection", "set", "tau", "tau_lo", "tau_hi", "same_winner",
                                      "p_same_winner", "loss"]].rename(columns={"set": "method"})))
    lines.append("\n## Are the targets retrievable? (`hybrid` pipeline, `fast`, top_k 100)\n")
    lines.append(md_table(targets))
    lines.append("\n## Pooled judging: Judged@10 vs pool depth (real queries)\n")
    lines.append(md_table(pooling))
    lines.append(
        "\nThe pool is the union of the 9 systems' top-d documents per query (`llamaeval.datasets.pool`, "
        "top_k 100 runs), taken as judged, as a judge working through it would leave it. "
        "`judged10_pooled`: mean Judged@10 of the 9 systems when each is in the pool; `judged10_left_out`: of "
        "each system when the pool is built from the 8 others (a new configuration tried after judging); "
        "`judged10_pipeline_left_out`: when the pool comes from the other two pipelines only; `pool_recall`: "
        "share of the collection's known relevant documents that the pool contains; `tau_pooled_vs_full`: "
        "Kendall's tau between the 9 systems ranked by nDCG@10 under the pool's judgements (the official "
        "grades of pooled documents; relevant documents outside the pool unseen) and under the full judgements.\n")
    # the hand-written reading of the numbers (between the markers) survives a re-run
    reading = ""
    if out.is_file():
        text = out.read_text()
        if READING_START in text and READING_END in text:
            reading = text[text.index(READING_START):text.index(READING_END) + len(READING_END)] + "\n"
    lines.insert(4, reading or f"{READING_START}\n(reading of the numbers goes here)\n{READING_END}\n")
    out.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collections", default="adi,med,cisi,cranfield,scifact")
    parser.add_argument("--cap", default="scifact=1500", help="name=N,...: cap a corpus at N documents")
    parser.add_argument("--per-method", type=int, default=50, help="simulated queries per method")
    parser.add_argument("--work", type=Path, default=Path("/tmp/llamaeval-trust"))
    parser.add_argument("--analyze-only", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "simulated.md")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.collections.split(",") if n.strip()]
    caps = {k: int(v) for k, v in (c.split("=") for c in args.cap.split(",") if c)}
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.analyze_only:
        import llamaeval as le

        with le.EmbeddedServer() as srv, le.LlamaCloud(api_key=srv.api_key, base_url=srv.base_url) as lc:
            for name in names:
                if (args.work / name / "info.json").is_file():
                    print(f"{name}: already run (in {args.work / name})", flush=True)
                    continue
                print(f"{name}: ...", flush=True)
                run_collection(name, caps.get(name), args.per_method, args.work, srv, lc)
    res = analyze(args.work, names)
    write_report(args.out, res, argv, started, machine)
    for key in ("trust", "per_method", "pooling", "targets", "questions"):
        res[key].to_csv(args.work / f"{key}.csv", index=False)
    print(res["trust"].to_string())
    print(res["questions"].to_string())
    print(res["targets"].to_string())
    print(res["pooling"].to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
