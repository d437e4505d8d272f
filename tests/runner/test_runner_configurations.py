"""Configurations: grids over retrieve parameters (alone or times modes), their names, columns,
manifest, resume fingerprint, save/load, and the analysis built on them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from _runner_fake import FakeCloud, recording_client

from llamaeval import BenchmarkConfig, BenchmarkRun, ConfigurationError, benchmark
from llamaeval.runner._configs import build_configurations, format_value

QUIET = BenchmarkConfig(progress=False, warmup=0)
JUDGED = ["q1", "q2", "q3", "q4", "q5"]
GRID = {"alpha": [0, 0.5, 1], "enable_reranking": [False, True]}
GRID_NAMES = ["alpha=0, enable_reranking=False", "alpha=0, enable_reranking=True",
              "alpha=0.5, enable_reranking=False", "alpha=0.5, enable_reranking=True",
              "alpha=1, enable_reranking=False", "alpha=1, enable_reranking=True"]


def grid_run(fake, qs, rank=None, **kw):
    client, recorder = recording_client(fake, rank)
    kw.setdefault("config", QUIET)
    return benchmark(client, kw.pop("pipeline_id", "pipe-a"), qs, **kw), recorder


def expected_docs(fake, query, mode, params, k):
    seen, out = set(), []
    for r in fake.ranking("pipe-a", query, mode, params)[:k]:
        if r["metadata"]["doc_id"] not in seen:
            seen.add(r["metadata"]["doc_id"])
            out.append(r["metadata"]["doc_id"])
    return out


def test_grid_of_six_sends_exactly_each_configurations_parameters(tiny_queryset):
    fake = FakeCloud()
    run, rec = grid_run(fake, tiny_queryset, top_k=(2, 4), params=GRID)
    req, res = run.requests, run.results
    # one row per configuration x top_k x query, configurations in the order given
    assert len(req) == 6 * 2 * 5
    assert list(dict.fromkeys(req["mode"])) == GRID_NAMES
    assert set(zip(req["mode"], req["top_k"], req["query_id"])) == {
        (n, k, q) for n in GRID_NAMES for k in (2, 4) for q in JUDGED}
    # retrieve got mode=None, the top_k and exactly the cell's parameters - nothing else
    text = dict(zip(tiny_queryset.queries["query_id"], tiny_queryset.queries["text"]))
    sent = sorted((q, json.dumps(kw, sort_keys=True)) for _, q, kw in rec.calls)
    assert sent == sorted((text[q], json.dumps({"mode": None, "top_k": k, "alpha": a, "enable_reranking": r},
                                               sort_keys=True))
                          for a in (0, 0.5, 1) for r in (False, True) for k in (2, 4) for q in JUDGED)
    # each configuration's parameters are columns of both frames
    for frame in (req, res):
        assert str(frame["alpha"].dtype) == "float64" and str(frame["enable_reranking"].dtype) == "boolean"
        names = frame["mode"].map(lambda n: n.replace("alpha=", "").replace(" enable_reranking=", ""))
        assert list(names) == [f"{a:g},{r}" for a, r in zip(frame["alpha"], frame["enable_reranking"])]
    assert list(res.columns[-2:]) == ["alpha", "enable_reranking"]
    # the documents are the ones that configuration's ranking gives
    cell = res[(res["mode"] == "alpha=0.5, enable_reranking=True") & (res["top_k"] == 4) & (res["query_id"] == "q3")]
    assert list(cell["doc_id"]) == expected_docs(fake, text["q3"], None, {"alpha": 0.5, "enable_reranking": True}, 4)


def test_configurations_frame_and_manifest(tiny_queryset):
    run, _ = grid_run(FakeCloud(), tiny_queryset, top_k=3, params=GRID)
    conf = run.configurations
    assert list(conf.columns) == ["pipeline_id", "mode", "top_k", "retrieve_mode", "params", "alpha",
                                  "enable_reranking"]
    assert list(conf["mode"]) == GRID_NAMES and conf["retrieve_mode"].isna().all()
    assert json.loads(conf["params"][3]) == {"alpha": 0.5, "enable_reranking": True}
    assert list(conf["alpha"]) == [0, 0, 0.5, 0.5, 1, 1]
    assert repr(run).endswith("configurations=6, requests=30, failed=0)")
    params = run.manifest["parameters"]
    assert params["modes"] == [] and params["top_k"] == [3]
    assert params["configurations"][1] == {"name": "alpha=0, enable_reranking=True", "mode": None,
                                           "params": {"alpha": 0, "enable_reranking": True}}
    assert run.manifest["fingerprint"]["configurations"] == params["configurations"]
    merged = run.evaluate(["mrr"], alignment="off").merge(conf, on=["pipeline_id", "mode", "top_k"])
    assert len(merged) == 6 and list(merged["alpha"]) == [0, 0, 0.5, 0.5, 1, 1]


def test_evaluate_and_compare_show_six_configurations(tiny_queryset):
    import llamaeval as le

    run, _ = grid_run(FakeCloud(), tiny_queryset, top_k=4, params=GRID)
    table = run.evaluate(["mrr", "ndcg@4"], alignment="off")  # the fake ranks at random
    assert list(table["mode"]) == GRID_NAMES and (table["n_queries"] == 5).all()
    sig = le.metrics.compare(run.results, run.qrels, baseline={"mode": GRID_NAMES[0]}, metric="mrr")
    assert list(sig["mode"]) == GRID_NAMES
    assert sig["baseline"].tolist() == [True] + [False] * 5
    assert sig["mrr"].tolist() == pytest.approx(table["mrr"].tolist())
    lat = run.latency()
    assert list(lat["mode"]) == GRID_NAMES and (lat["n"] == 5).all()


def test_modes_times_named_sets(tiny_queryset):
    run, rec = grid_run(FakeCloud(), tiny_queryset, modes=["accurate", "fast"], top_k=3,
                        params={"hybrid": {"alpha": 0.5}, "sparse": {"alpha": 0, "sparse_similarity_top_k": 20}},
                        config=BenchmarkConfig(progress=False, warmup=2))
    names = ["accurate hybrid", "accurate sparse", "fast hybrid", "fast sparse"]
    assert list(dict.fromkeys(run.requests["mode"])) == names
    conf = run.configurations
    assert list(conf["retrieve_mode"]) == ["accurate", "accurate", "fast", "fast"]
    assert str(conf["sparse_similarity_top_k"].dtype) == "Int64"
    assert conf["sparse_similarity_top_k"].isna().tolist() == [True, False, True, False]
    # warm-up: 2 requests per (pipeline, configuration), then one per cell
    warm, measured = rec.calls[:8], rec.calls[8:]
    assert len(measured) == 4 * 5
    assert sorted(kw["mode"] for _, _, kw in warm) == ["accurate"] * 4 + ["fast"] * 4
    assert {json.dumps(kw, sort_keys=True) for _, _, kw in measured} == {
        json.dumps({"mode": m, "top_k": 3, **p}, sort_keys=True)
        for m in ("accurate", "fast") for p in ({"alpha": 0.5}, {"alpha": 0, "sparse_similarity_top_k": 20})}
    assert run.manifest["parameters"]["modes"] == ["accurate", "fast"]


def test_list_and_flat_dict_forms(tiny_queryset):
    run, rec = grid_run(FakeCloud(), tiny_queryset, top_k=2,
                        params=[{"alpha": 0.25}, {"name": "dense only", "alpha": 1, "retrieval_mode": "chunks"}])
    assert list(run.configurations["mode"]) == ["alpha=0.25", "dense only"]
    assert run.configurations["retrieval_mode"].tolist()[1] == "chunks"
    assert pd.isna(run.configurations["retrieval_mode"].tolist()[0])
    one, _ = grid_run(FakeCloud(), tiny_queryset, top_k=2, modes="fast", params={"alpha": 0.25})
    assert list(one.configurations["mode"]) == ["fast alpha=0.25"]


def test_share_k_per_configuration(tiny_queryset):
    run, rec = grid_run(FakeCloud(), tiny_queryset, top_k=(1, 3), params={"alpha": [0, 1]},
                        config=BenchmarkConfig(progress=False, warmup=0, share_k=True))
    assert len(rec.calls) == 2 * 5 and {kw["top_k"] for _, _, kw in rec.calls} == {3}
    req = run.requests
    assert len(req) == 2 * 2 * 5 and (req["shared"] == (req["top_k"] == 1)).all()
    first = req[(req["mode"] == "alpha=1") & (req["query_id"] == "q1")]
    assert first["order"].nunique() == 1 and list(first["n_results"]) == [1, 3]


def test_save_load_round_trip(tiny_queryset, tmp_path):
    run, _ = grid_run(FakeCloud(), tiny_queryset, top_k=(2, 3), params=[{"name": "alpha=0.5 filtered", "alpha": 0.5,
        "search_filters": {"filters": [{"key": "doc_id", "operator": "in", "value": ["D1", "D2"]}]}},
        {"name": "plain"}])
    loaded = BenchmarkRun.load(run.save(tmp_path / "saved"))
    for name in ("results", "requests"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(run, name), check_exact=True)
    pd.testing.assert_frame_equal(loaded.configurations, run.configurations)
    conf = loaded.configurations
    assert str(conf["search_filters"].dtype) == "string"  # dicts as JSON text
    assert json.loads(conf["search_filters"][0])["filters"][0]["value"] == ["D1", "D2"]
    assert conf["search_filters"].isna().tolist() == [False, False, True, True]
    files = sorted(p.name for p in loaded.to_trec(tmp_path / "trec"))
    assert files == ["pipe-a_alpha_0.5_filtered_k2.trec", "pipe-a_alpha_0.5_filtered_k3.trec",
                     "pipe-a_plain_k2.trec", "pipe-a_plain_k3.trec"]
    tag = (tmp_path / "trec" / "pipe-a_plain_k3.trec").read_text().split()[5]
    assert tag == "llamaeval.plain.k3"


def test_run_of_an_earlier_version_loads(fake, tiny_queryset, tmp_path):
    """Saved before configurations existed: no parameters.configurations in the manifest."""
    from _runner_fake import make_async_client

    run = benchmark(make_async_client(fake), "pipe-a", tiny_queryset, ("fast", "advanced"), 2, config=QUIET)
    folder = run.save(tmp_path / "old")
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["parameters"]["configurations"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    old = BenchmarkRun.load(folder)
    conf = old.configurations
    assert list(conf.columns) == ["pipeline_id", "mode", "top_k", "retrieve_mode", "params"]
    assert list(conf["mode"]) == ["fast", "advanced"] and list(conf["retrieve_mode"]) == ["fast", "advanced"]
    assert set(conf["params"]) == {"{}"}
    assert len(old.evaluate(["mrr"], alignment="off")) == 2


def test_resume_same_grid_refuses_another(tiny_queryset, tmp_path):
    fake = FakeCloud()
    grid_run(fake, tiny_queryset, top_k=2, params=GRID, out=tmp_path)
    again, rec = grid_run(fake, tiny_queryset, top_k=2, params=GRID, out=tmp_path)
    assert rec.calls == [] and len(again.requests) == 30  # everything was done
    _, rec = grid_run(fake, tiny_queryset, top_k=(2, 3), params=GRID, out=tmp_path, on_existing="extend")
    assert len(rec.calls) == 30  # a new top_k is only the missing cells
    for other in ({"alpha": [0, 0.5]}, {**GRID, "rerank_top_n": [5]}, [{"name": GRID_NAMES[0], "alpha": 0.9}]):
        with pytest.raises(ConfigurationError, match="different"):
            grid_run(fake, tiny_queryset, top_k=2, params=other, out=tmp_path)
    with pytest.raises(ConfigurationError, match="different"):  # modes alone are another run too
        grid_run(fake, tiny_queryset, top_k=2, modes="fast", out=tmp_path)


@pytest.mark.parametrize("params, modes, message", [
    ({"alpha": [0, 1], "mode": ["fast"]}, None, r"\['mode'\]"),
    ({"top_k": [1, 2], "query": "x"}, None, r"\['query', 'top_k'\]"),
    ([{"pipeline_id": "p"}], None, r"\['pipeline_id'\]"),
    ({"alpha": []}, None, r"empty.*\['alpha'\]"),
    ({}, None, "empty"),
    ([], None, "empty"),
    ({"alpha": [0, 0.0]}, None, "repeated.*alpha=0"),
    ([{"alpha": 1}, {"name": "alpha=1"}], None, "repeated"),
    ({"fast": {"alpha": 0}}, None, "mode name"),
    ({"alpha": float("nan")}, None, "JSON"),
    ({"alpha": [object()]}, None, "JSON"),
    ({"latency_s": [1]}, None, "column"),
    ({"name": ["a", "b"], "alpha": [0, 1]}, None, "name"),
    ([{"alpha": 0}, "sparse"], None, r"params\[1\]"),
    ("alpha=0", None, "params must be"),
    ({"alpha": [0]}, (), "modes"),
])
def test_bad_params_raise_before_sending(tiny_queryset, params, modes, message):
    client, rec = recording_client(FakeCloud())
    with pytest.raises(ConfigurationError, match=message):
        benchmark(client, "pipe-a", tiny_queryset, modes, 2, params=params, config=QUIET)
    assert rec.calls == []


def test_params_may_not_repeat_retrieve_params(tiny_queryset):
    client, rec = recording_client(FakeCloud())
    cfg = BenchmarkConfig(progress=False, warmup=0, retrieve_params={"alpha": 0.5})
    with pytest.raises(ConfigurationError, match=r"\['alpha'\].*retrieve_params"):
        benchmark(client, "pipe-a", tiny_queryset, top_k=2, params={"alpha": [0, 1]}, config=cfg)
    assert rec.calls == []


def test_names():
    names = [c.name for c in build_configurations(None, {"alpha": [0, 0.25], "dense_similarity_top_k": 50,
                                                         "retrieval_mode": ["chunks"]})]
    assert names == ["alpha=0, retrieval_mode=chunks", "alpha=0.25, retrieval_mode=chunks"]  # fixed values unnamed
    both = build_configurations(["fast"], [{}, {"name": "hybrid", "alpha": 0.5}, {"alpha": 0.1}])
    assert [(c.name, c.mode, dict(c.params)) for c in both] == [
        ("fast", "fast", {}), ("fast hybrid", "fast", {"alpha": 0.5}), ("fast alpha=0.1", "fast", {"alpha": 0.1})]
    assert [c.name for c in build_configurations(None, [{}])] == ["default"]
    assert [c.name for c in build_configurations(["fast", "accurate"], None)] == ["fast", "accurate"]
    assert [format_value(v) for v in (0, 1.0, 0.5, 1e-5, True, None, "x", {"b": 1, "a": [1]})] == [
        "0", "1", "0.5", "1e-05", "True", "None", "x", '{"a":[1],"b":1}']


def judged_ranking(fake: FakeCloud, qs):
    """A ranking that finds each query's judged documents, higher the larger ``alpha``, and one
    place higher with reranking: aligned with the judgements, and the configurations differ."""
    relevant = qs.qrels.merge(qs.queries, on="query_id").groupby("text")["doc_id"].apply(set).to_dict()

    def rank(pipeline_id, query, mode, params):
        chunks = fake.ranking(pipeline_id, query, mode)
        good = [c for c in chunks if c["metadata"]["doc_id"] in relevant.get(query, set())]
        rest = [c for c in chunks if c not in good]
        at = round(6 * (1 - params.get("alpha", 0.5))) + (0 if params.get("enable_reranking") else 1)
        return rest[:at] + good + rest[at:]

    return rank


def test_dashboard_report_and_plots_build_with_configurations(tiny_queryset, tmp_path):
    import llamaeval as le

    fake = FakeCloud()
    run, _ = grid_run(fake, tiny_queryset, rank=judged_ranking(fake, tiny_queryset), top_k=(5, 10), params=GRID)
    table = le.report.summary_table(run, ["ndcg@10"])
    assert list(dict.fromkeys(table["mode"])) == GRID_NAMES and len(table) == 12
    best = table.sort_values("ndcg@10", ascending=False).iloc[0]
    assert best["mode"] == "alpha=1, enable_reranking=True"

    path = run.report(tmp_path / "report.html", metrics=["ndcg@10", "mrr"])
    html = path.read_text(encoding="utf-8")
    assert "alpha=1, enable_reranking=True" in html and "data:image/png;base64," in html
    md = path.with_suffix(".md").read_text(encoding="utf-8")
    rows = [line for line in md.splitlines() if line.startswith("| alpha=")]
    assert [r.split("|")[1].strip() for r in rows[:12:2]] == GRID_NAMES  # summary table: display order
    assert "baseline" in md and "alpha=0, enable_reranking=False" in md  # the first configuration

    dash = le.widgets.dashboard(run)
    assert dash.modes.description == "configs" and list(dash.modes.options) == GRID_NAMES
    assert bytes(dash.chart.value)[:4] == b"\x89PNG"
    dash.modes.value = (GRID_NAMES[0], GRID_NAMES[-1])
    assert GRID_NAMES[-1] in dash.table.value and GRID_NAMES[2] not in dash.table.value
    inspector = le.widgets.query_inspector(run)
    assert inspector.modes == GRID_NAMES

    ax = le.plots.latency_distribution(run)
    assert [t.get_text() for t in ax.get_xticklabels()] == GRID_NAMES
    assert ax.get_xlabel() == "configuration"
    ax = le.plots.metric_vs_top_k(run, "ndcg@10")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == GRID_NAMES
