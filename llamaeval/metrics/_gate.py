"""The regression gate: did a new run lose quality against a baseline run?

Two runs are paired query by query, so they must have been measured on the same queries and
judgements (compared by content hash; otherwise :class:`IncomparableRunsError`). Their
configurations are paired by the retrieve request they send (mode, top_k, parameters), not by
pipeline id: a re-ingest makes a new pipeline. For each paired configuration and metric, a
one-sided paired test asks whether the new run is worse by more than ``max_drop``
(H0: mean(new - baseline) >= -max_drop); the p-values are corrected over every test
(Holm, :func:`~llamaeval.metrics._significance.adjust_pvalues`). A configuration fails only
when its drop is larger than ``max_drop`` AND significant after correction.

    result = gate("runs/new", "runs/release-1.2", metrics=["ndcg@10"], max_drop=0.01, alpha=0.05)
    result.passed, result.exit_code      # False, 3
    print(result.summary())              # for the CI log: which configuration, how much, p, the worst queries
    result.markdown()                    # for the CI job page
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from llamaeval._display import STYLE, config_label, esc, frame_html, plural, short_id, snippet
from llamaeval._errors import EvaluationError, IncomparableRunsError
from llamaeval.metrics._frames import Selector, select_config
from llamaeval.metrics._significance import adjust_pvalues, sign_flip_pvalue

__all__ = ["EXIT_DROPPED", "EXIT_PASSED", "EXIT_REFUSED", "GateResult", "gate", "one_sided_p"]

EXIT_PASSED = 0
#: A gated configuration lost significantly more than the allowed margin.
EXIT_DROPPED = 3
#: The runs cannot be paired (other queries or judgements, no shared configuration).
EXIT_REFUSED = 2
_TESTS = {"permutation": "paired permutation test (sign flips)", "t-test": "paired t-test"}
_WORST = 5  # queries shown per failing row
_DETAILED = 3  # failing rows shown with their queries


def one_sided_p(diff: Any, margin: float = 0.0, test: str = "permutation", *,
                n_permutations: int = 10_000, seed: int = 0) -> float:
    """p-value of H0: mean(diff) >= -margin against H1: mean(diff) < -margin (``diff`` = new -
    baseline per query; a drop larger than ``margin``).

    ``"permutation"``: sign flips of ``diff + margin``, exact when 2**n <= ``n_permutations``,
    else ``n_permutations`` random patterns seeded with ``seed`` and p = (1 + hits) / (1 + n).
    ``"t-test"``: one-sample t-test of ``diff + margin`` (``alternative="less"``).
    Constant shifted differences: p = 0 when they are below 0, else 1. No query: NaN."""
    x = np.asarray(diff, dtype=np.float64) + float(margin)
    if x.ndim != 1:
        raise EvaluationError(f"diff must be 1-d, got shape {x.shape}")
    if np.isnan(x).any():
        raise EvaluationError("paired differences contain NaN")
    n = len(x)
    if n == 0:
        return float("nan")
    observed = x.mean()
    tol = 1e-12 * max(1.0, float(np.abs(x).max()))
    if np.ptp(x) <= tol:
        return 0.0 if observed < -tol else 1.0
    if test == "t-test":
        from scipy import stats

        return float(stats.ttest_1samp(x, 0.0, alternative="less").pvalue) if n >= 2 else float("nan")
    if test != "permutation":
        raise EvaluationError(f"test must be one of {sorted(_TESTS)}, got {test!r}")
    if n_permutations < 1:
        raise EvaluationError(f"n_permutations must be >= 1, got {n_permutations}")
    return sign_flip_pvalue(x, lambda means: means <= observed + tol, n_permutations, seed)


@dataclass
class GateResult:
    """The gate's verdict. ``table``: one row per gated (configuration, metric): ``configuration``
    (label), ``metric``, ``baseline`` and ``new`` means, ``diff`` (new - baseline), ``p`` (one-sided,
    H1: a drop larger than ``max_drop``), ``p_adj`` (Holm over every row), ``dropped`` (the
    drop exceeds ``max_drop`` and ``p_adj`` < ``alpha``), ``n_queries``, ``request`` (the
    retrieve request that paired the rows). ``worst``: per row, the queries that lost most.
    ``passed`` / ``exit_code`` (0 passed, 3 a drop). ``str(result)`` is the CI log text."""

    metrics: list[str]
    max_drop: float
    alpha: float
    test: str
    table: pd.DataFrame
    worst: dict[tuple[str, str], pd.DataFrame] = field(repr=False)
    n_queries: int
    baseline: str
    new: str
    unmatched: dict[str, list[str]] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True unless a gated configuration dropped significantly more than ``max_drop``."""
        return not bool(self.table["dropped"].any())

    @property
    def exit_code(self) -> int:
        """The CLI's exit code: 0 passed, 3 a significant drop beyond the margin."""
        return EXIT_PASSED if self.passed else EXIT_DROPPED

    @property
    def failures(self) -> pd.DataFrame:
        """The rows of ``table`` that failed the gate, the largest drop first."""
        return self.table[self.table["dropped"]].sort_values("diff", kind="stable").reset_index(drop=True)

    def _how(self) -> str:
        return (f"one-sided {_TESTS[self.test]} at alpha {self.alpha:g}, "
                f"{plural(self.n_queries, 'query', 'queries')}")

    def verdict(self) -> str:
        """The verdict in one sentence."""
        metric_text = "/".join(self.metrics)
        if not self.passed:
            f = self.failures
            first = f.iloc[0]
            more = f" (and {plural(len(f) - 1, 'other configuration or metric', 'other configurations or metrics')})" \
                if len(f) > 1 else ""
            return (f"FAILED — {first['metric']} of {first['configuration']} dropped by {-first['diff']:.3f} "
                    f"({first['baseline']:.3f} → {first['new']:.3f}), more than the allowed {self.max_drop:g}: "
                    f"p = {first['p_adj']:.3g} after Holm over {plural(len(self.table), 'test')} "
                    f"({self._how()}){more}.")
        worst = self.table.sort_values("diff", kind="stable").iloc[0]
        return (f"passed — no gated configuration lost significantly more than {self.max_drop:g} {metric_text} "
                f"({plural(self.table['configuration'].nunique(), 'configuration')} × "
                f"{plural(len(self.metrics), 'metric')}; {self._how()}, Holm-corrected). Largest change: "
                f"{worst['metric']} of {worst['configuration']} {worst['diff']:+.3f} "
                f"({worst['baseline']:.3f} → {worst['new']:.3f}, p = {worst['p_adj']:.3g}).")

    def display_table(self) -> pd.DataFrame:
        """The table for people: configuration, metric, baseline, new, Δ, p (adj), verdict."""
        t = self.table
        verdict = np.where(t["dropped"], "FAIL",
                           np.where(-t["diff"] > self.max_drop, "drop > margin, not significant", "ok"))
        return pd.DataFrame({"configuration": t["configuration"], "metric": t["metric"],
                             "baseline": t["baseline"].round(4), "new": t["new"].round(4),
                             "Δ": t["diff"].round(4), "p (adj)": t["p_adj"], "verdict": verdict})

    def summary(self) -> str:
        """The text for a CI log: the verdict, the failed rows with their worst queries, the table,
        what else changed between the runs."""
        lines = [f"llamaeval gate: {self.verdict()}"]
        failures = self.failures
        for row in failures.head(_DETAILED).itertuples(index=False):
            worst = self.worst.get((row.configuration, row.metric))
            lines.append(f"  {row.configuration}, {row.metric}: {row.baseline:.3f} → {row.new:.3f} "
                         f"(Δ {row.diff:+.3f}), p = {row.p:.3g}, after Holm {row.p_adj:.3g}")
            if worst is not None and len(worst):
                lines.append("    queries that lost most: " + "; ".join(
                    f"{w.query_id} {w.diff:+.3f} ({w.baseline:.3f} → {w.new:.3f})"
                    + (f" \"{snippet(w.text, 50)}\"" if isinstance(w.text, str) and w.text else "")
                    for w in worst.itertuples(index=False)))
        if len(failures) > _DETAILED:
            lines.append(f"  … {len(failures) - _DETAILED} more failing rows in the table below")
        lines.append("")
        lines.append(self.display_table().to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        lines += ["", f"baseline: {self.baseline}", f"new:      {self.new}"]
        lines += [f"changed:  {c}" for c in self.changes]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def markdown(self) -> str:
        """A Markdown summary for a CI job page (e.g. ``$GITHUB_STEP_SUMMARY``)."""
        icon = "✅" if self.passed else "❌"
        out = [f"### {icon} llamaeval gate {'passed' if self.passed else 'failed'}", "", self.verdict(), ""]
        for row in self.failures.head(_DETAILED).itertuples(index=False):
            worst = self.worst.get((row.configuration, row.metric))
            if worst is not None and len(worst):
                out += [f"Queries that lost most — {row.configuration}, {row.metric}:", "",
                        _markdown_table(worst.assign(text=[snippet(t, 80) if isinstance(t, str) else ""
                                                           for t in worst["text"]])), ""]
        out += [_markdown_table(self.display_table()), "",
                f"- baseline: {self.baseline}", f"- new: {self.new}"]
        out += [f"- changed: {c}" for c in self.changes]
        out += [f"- note: {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def _repr_html_(self) -> str:
        head = ("<div class='le-warn'>" if not self.passed else "<div class='le-rec'>") + esc(self.verdict()) + "</div>"
        worst = ""
        for row in self.failures.head(_DETAILED).itertuples(index=False):
            w = self.worst.get((row.configuration, row.metric))
            if w is not None and len(w):
                worst += (f"<p>Queries that lost most — {esc(row.configuration)}, {esc(row.metric)}:</p>"
                          + frame_html(w, max_rows=_WORST, wrap=("text",)))
        rest = "".join(f"<li>{esc(x)}</li>" for x in
                       [f"baseline: {self.baseline}", f"new: {self.new}",
                        *(f"changed: {c}" for c in self.changes), *(f"note: {n}" for n in self.notes)])
        return (STYLE + "<div class='le-card' data-le='gate'><h4>llamaeval gate</h4>" + head + worst
                + frame_html(self.display_table(), max_rows=60) + f"<ul class='le-muted'>{rest}</ul></div>")


def gate(new_run: Any, baseline_run: Any, metrics: str | Sequence[str] = "ndcg@10", *, max_drop: float = 0.01,
         alpha: float = 0.05, test: str = "permutation", configurations: Sequence[Selector] | None = None,
         n_permutations: int = 10_000, seed: int = 0) -> GateResult:
    """Compare ``new_run`` with ``baseline_run`` (BenchmarkRun objects or saved run folders).

    Raises :class:`~llamaeval.IncomparableRunsError` when the runs were measured on other
    queries or judgements (content hashes differ) or share no configuration. Otherwise tests
    every configuration both runs hold (or those ``configurations`` select in the new run, e.g.
    ``[{"mode": "fast", "top_k": 10}]``) on every metric, and returns a :class:`GateResult`
    whose ``exit_code`` is 3 when a drop larger than ``max_drop`` (absolute, metric units) is
    significant at ``alpha`` after Holm correction, else 0.
    """
    metrics = [metrics] if isinstance(metrics, str) else list(dict.fromkeys(metrics))
    if not metrics:
        raise EvaluationError("give at least one metric to gate, e.g. 'ndcg@10'")
    if not np.isfinite(max_drop) or max_drop < 0:
        raise EvaluationError(f"max_drop must be >= 0 (metric units), got {max_drop}")
    if not 0 < alpha < 1:
        raise EvaluationError(f"alpha must be in (0, 1), got {alpha}")
    if test not in _TESTS:
        raise EvaluationError(f"test must be one of {sorted(_TESTS)}, got {test!r}")
    new, new_where = _as_run(new_run, "new run")
    base, base_where = _as_run(baseline_run, "baseline run")
    new.check_failures(warn=False)
    base.check_failures(warn=False)
    new_id, base_id = new.identity, base.identity
    _refuse_other_queries(new, base, new_id, base_id)
    pairs, unmatched = _pair_configurations(new, base, new_id, base_id, configurations)

    from llamaeval.metrics._relevance import per_query_matrix

    new_cfg, judged, _, new_scores = per_query_matrix(new.results, new.qrels, metrics)
    base_cfg, base_judged, _, base_scores = per_query_matrix(base.results, base.qrels, metrics)
    if list(judged) != list(base_judged):  # same judgements, so this cannot happen; checked anyway
        raise IncomparableRunsError("the runs' judged queries differ; cannot pair them query by query")
    new_rows, base_rows = _row_index(new_cfg), _row_index(base_cfg)
    text = dict(zip(new.queries["query_id"].astype(str), new.queries["text"].astype(str)))

    rows, worst = [], {}
    for label, request, nkey, bkey in pairs:
        for m in metrics:
            n_s, b_s = new_scores[m][new_rows[nkey]], base_scores[m][base_rows[bkey]]
            d = n_s - b_s
            rows.append({"configuration": label, "metric": m, "baseline": float(b_s.mean()),
                         "new": float(n_s.mean()), "diff": float(d.mean()),
                         "p": one_sided_p(d, max_drop, test, n_permutations=n_permutations, seed=seed),
                         "n_queries": len(d), "request": request})
            lost = np.argsort(d, kind="stable")[:_WORST]
            lost = lost[d[lost] < 0]
            worst[(label, m)] = pd.DataFrame({
                "query_id": [judged[i] for i in lost], "baseline": b_s[lost], "new": n_s[lost], "diff": d[lost],
                "text": [text.get(str(judged[i]), "") for i in lost]})
    table = pd.DataFrame(rows)
    table["p_adj"] = adjust_pvalues(table["p"].to_numpy(), "holm")
    sig = np.nan_to_num(table["p_adj"].to_numpy(), nan=1.0) < alpha
    table["dropped"] = sig & (-table["diff"].to_numpy() > max_drop)
    table = table[["configuration", "metric", "baseline", "new", "diff", "p", "p_adj", "dropped", "n_queries",
                   "request"]]
    notes = []
    if unmatched.get("baseline"):
        notes.append(f"not gated, only in the baseline: {', '.join(unmatched['baseline'][:8])}"
                     + (" …" if len(unmatched["baseline"]) > 8 else ""))
    if unmatched.get("new"):
        notes.append(f"not gated, only in the new run: {', '.join(unmatched['new'][:8])}"
                     + (" …" if len(unmatched["new"]) > 8 else ""))
    from llamaeval.runner._run import failure_summary

    for who, run in (("new run", new), ("baseline", base)):
        message = failure_summary(run.requests)
        if message:
            notes.append(f"{who}: {message}")
    return GateResult(metrics=metrics, max_drop=float(max_drop), alpha=float(alpha), test=test, table=table,
                      worst=worst, n_queries=len(judged), baseline=_describe(base_where, base_id),
                      new=_describe(new_where, new_id), unmatched=unmatched,
                      changes=_changes(base_id, new_id), notes=notes)


def _markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table; numbers with 4 significant digits, ``|`` escaped."""
    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.4g}"
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "|" + "|".join("---:" if frame[c].dtype.kind in "if" else "---" for c in frame.columns) + "|"
    return "\n".join([head, sep, *("| " + " | ".join(cell(v) for v in r) + " |"
                                    for r in frame.itertuples(index=False, name=None))])


# --- loading and pairing -------------------------------------------------------------------------

def _as_run(run: Any, what: str) -> tuple[Any, str]:
    """(BenchmarkRun, where it came from) for a run or a saved run folder."""
    if isinstance(run, (str, os.PathLike)):
        from llamaeval.runner import BenchmarkRun

        return BenchmarkRun.load(run), str(run)
    for attr in ("results", "qrels", "queries", "requests", "identity", "configurations"):
        if not hasattr(run, attr):
            raise EvaluationError(f"{what} must be a BenchmarkRun or a saved run folder, got {type(run).__name__}")
    return run, "(in memory)"


def _refuse_other_queries(new: Any, base: Any, new_id: dict, base_id: dict) -> None:
    """IncomparableRunsError, with the numbers, unless both runs hold the same queries and judgements."""
    if new_id["queries_sha256"] != base_id["queries_sha256"]:
        nq = dict(zip(new.queries["query_id"].astype(str), new.queries["text"].astype(str)))
        bq = dict(zip(base.queries["query_id"].astype(str), base.queries["text"].astype(str)))
        only_b = [q for q in bq if q not in nq]
        only_n = [q for q in nq if q not in bq]
        changed = [q for q in bq if q in nq and bq[q] != nq[q]]
        detail = "; ".join(part for part in (
            f"{len(only_b)} only in the baseline (e.g. {', '.join(only_b[:4])})" if only_b else "",
            f"{len(only_n)} only in the new run (e.g. {', '.join(only_n[:4])})" if only_n else "",
            f"{len(changed)} with another text (e.g. {', '.join(changed[:4])})" if changed else "") if part)
        raise IncomparableRunsError(
            f"the runs were measured on different queries: baseline {plural(len(bq), 'query', 'queries')} "
            f"(sha256 {base_id['queries_sha256'][:12]}), new run {plural(len(nq), 'query', 'queries')} "
            f"(sha256 {new_id['queries_sha256'][:12]}); {detail}. A query-by-query comparison needs the same "
            f"queries and judgements: benchmark the new pipeline with the baseline's query set "
            f"({_queryset_text(base_id)})")
    if new_id["qrels_sha256"] != base_id["qrels_sha256"]:
        def grades(run: Any) -> dict[tuple[str, str], float]:
            q = run.qrels
            return {(str(a), str(b)): float(g) for a, b, g in zip(q["query_id"], q["doc_id"], q["relevance"])}

        nj, bj = grades(new), grades(base)
        only_b = [k for k in bj if k not in nj]
        only_n = [k for k in nj if k not in bj]
        changed = [k for k in bj if k in nj and bj[k] != nj[k]]
        eg = ", ".join(f"query {q} doc {d}: {bj[(q, d)]:g} → {nj[(q, d)]:g}" for q, d in changed[:3])
        raise IncomparableRunsError(
            f"the runs were scored against different judgements (baseline sha256 {base_id['qrels_sha256'][:12]}, "
            f"new run {new_id['qrels_sha256'][:12]}): {len(only_b)} judgement(s) only in the baseline, "
            f"{len(only_n)} only in the new run, {len(changed)} with another grade{f' ({eg})' if eg else ''}. "
            f"Scores against other judgements are not comparable: benchmark both with the same judgements "
            f"({_queryset_text(base_id)})")


def _queryset_text(identity: dict) -> str:
    qs = identity.get("queryset") or {}
    return (f"the baseline used {qs.get('name') or 'an unnamed query set'}"
            + (f", split {qs['split']}" if qs.get("split") else "")
            + f", {plural(identity['n_queries'], 'judged query', 'judged queries')}")


def _labels(identity: dict, names: dict[str, str], with_pipeline: bool) -> dict[str, tuple[str, Any]]:
    """{request key: (label, (pipeline_id, name, top_k))}; raises when a key repeats."""
    out: dict[str, tuple[str, Any]] = {}
    for c in identity["configurations"]:
        pipe = names.get(c["pipeline_id"], short_id(c["pipeline_id"]))
        key = (f"{pipe}\x1f" if with_pipeline else "") + c["request"]
        label = config_label(c["name"], c["top_k"], pipe if with_pipeline else None)
        if key in out:
            raise IncomparableRunsError(
                f"two configurations send the same request ({out[key][0]} and {label}); "
                "name the pipelines apart, or gate runs of one pipeline")
        out[key] = (label, (c["pipeline_id"], c["name"], c["top_k"]))
    return out


def _pair_configurations(new: Any, base: Any, new_id: dict, base_id: dict,
                         selectors: Sequence[Selector] | None) -> tuple[list[tuple[str, str, Any, Any]], dict]:
    """[(label, request, new row key, baseline row key)] of the configurations both runs hold, paired
    by their retrieve request (and pipeline name when a run holds several pipelines)."""
    multi = any(len({c["pipeline_id"] for c in i["configurations"]}) > 1 for i in (new_id, base_id))
    new_map = _labels(new_id, new.pipeline_names, multi)
    base_map = _labels(base_id, base.pipeline_names, multi)
    if selectors:
        conf = new.configurations
        wanted = set()
        for sel in selectors:
            mask = select_config(conf, sel, "gated configuration")
            for r in conf[mask].itertuples(index=False):
                wanted.add((str(r.pipeline_id), str(r.mode), int(r.top_k)))
        new_map = {k: v for k, v in new_map.items() if v[1] in wanted}
    pairs = [(base_map[k][0] if base_map[k][0] == new_map[k][0] else f"{new_map[k][0]} (baseline: {base_map[k][0]})",
              k.split("\x1f")[-1], new_map[k][1], base_map[k][1]) for k in base_map if k in new_map]
    unmatched = {"baseline": [v[0] for k, v in base_map.items() if k not in new_map],
                 "new": [v[0] for k, v in new_map.items() if k not in base_map]}
    if not pairs:
        raise IncomparableRunsError(
            "no configuration of the new run sends the same retrieve request (mode, top_k, parameters) as "
            f"one of the baseline's: baseline {', '.join(v[0] for v in base_map.values())}; new run "
            f"{', '.join(v[0] for v in new_map.values()) or '(none selected)'}. Benchmark the new pipeline with "
            "the baseline's configurations")
    return pairs, unmatched


def _row_index(configs: pd.DataFrame) -> dict[tuple[str, str, int], int]:
    out = {}
    for i, r in enumerate(configs.to_dict("records")):
        out[(str(r.get("pipeline_id")), str(r.get("mode")), int(r.get("top_k")))] = i
    return out


def _describe(where: str, identity: dict) -> str:
    pipes = ", ".join(f"{p.get('name') or 'pipeline'} {short_id(p.get('id'))}" for p in identity["pipelines"])
    versions = f"llamaeval {identity.get('llamaeval') or '?'}, server {identity.get('server_version') or 'unknown'}"
    return f"{where} — {pipes or 'pipeline unknown'}; {versions}"


def _changes(base: dict, new: dict) -> list[str]:
    """What differs between the runs besides the results: pipelines, their configuration, versions."""
    out = []
    bp, np_ = base["pipelines"], new["pipelines"]
    if [p.get("id") for p in bp] != [p.get("id") for p in np_]:
        out.append("pipeline " + ", ".join(short_id(p.get("id")) for p in bp) + " → "
                   + ", ".join(short_id(p.get("id")) for p in np_))
    if [p.get("config_sha256") for p in bp] != [p.get("config_sha256") for p in np_]:
        out.append("pipeline configuration (retrieval/chunking config, embedding model or presets)")
    for key, what in (("num_files", "files"), ("num_chunks", "chunks")):
        b = [p.get(key) for p in bp]
        n = [p.get(key) for p in np_]
        if b != n and any(v is not None for v in b + n):
            out.append(f"{what} {', '.join(map(str, b))} → {', '.join(map(str, n))}")
    for key, what in (("server_version", "server"), ("llamaeval", "llamaeval"), ("dialect", "API dialect")):
        if base.get(key) != new.get(key):
            out.append(f"{what} {base.get(key)} → {new.get(key)}")
    return out
