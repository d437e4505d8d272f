"""Query inspector: one query, every mode's ranked documents side by side."""

from __future__ import annotations

from typing import Any

from llamaeval._errors import ConfigurationError
from llamaeval._keys import natural_order
from llamaeval._display import STYLE
from llamaeval.widgets._html import TABLE_STYLE, esc


def _truncate(text: Any, n: int) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= n else s[: n - 1] + "…"


class QueryInspector:
    """Pick a query (``query``), a ``top_k`` and a ``pipeline``; ``view`` shows each mode's results.

    Relevant documents are highlighted by grade (darker = more relevant); each
    column says the request latency (ms), status, and which relevant documents
    were missed. ``corpus`` (DataFrame with ``doc_id``, ``title``) adds titles.
    """

    def __init__(self, run: Any, *, corpus: Any = None, query_id: str | None = None) -> None:
        import ipywidgets as w

        self.run = run
        results, requests = run.results, run.requests
        if len(requests) == 0:
            raise ConfigurationError("the run has no requests to inspect")
        self._titles: dict[str, str] = {}
        if corpus is not None and "doc_id" in corpus.columns and "title" in corpus.columns:
            self._titles = dict(zip(corpus["doc_id"].astype(str), corpus["title"].fillna("").astype(str)))
        queries = run.queries if getattr(run, "queries", None) is not None else None
        texts = dict(zip(queries["query_id"].astype(str), queries["text"].astype(str))) if queries is not None else {}
        qids = list(dict.fromkeys(requests["query_id"].astype(str)))
        self._texts = texts
        self._qrels = run.qrels
        options = [(f"{q}: {_truncate(texts.get(q, ''), 70)}", q) for q in qids]
        if query_id is not None and query_id not in qids:
            raise ConfigurationError(f"query {query_id!r} is not in this run")
        ks = sorted({int(k) for k in requests["top_k"]})
        pipelines = list(dict.fromkeys(requests["pipeline_id"].astype(str)))
        self.modes = natural_order(requests["mode"])
        self.query = w.Dropdown(options=options, value=query_id or qids[0], description="query",
                                layout=w.Layout(width="60%"))
        self.top_k = w.Dropdown(options=ks, value=10 if 10 in ks else ks[-1], description="top_k")
        from llamaeval._display import pipeline_label, pipeline_names

        names = pipeline_names(getattr(run, "manifest", None))
        self.pipeline = w.Dropdown(options=[(pipeline_label(p, names), p) for p in pipelines], value=pipelines[0],
                                   description="pipeline")
        self.view = w.HTML()
        for control in (self.query, self.top_k, self.pipeline):
            control.observe(lambda _c: self.update(), names="value")
        controls = [self.query, self.top_k] + ([self.pipeline] if len(pipelines) > 1 else [])
        self.widget = w.VBox([w.HBox(controls), self.view])
        self._results, self._requests = results, requests
        self.update()

    def _column(self, mode: str, qid: str, k: int, pipeline: str, grades: dict[str, int]) -> str:
        res = self._results
        sel = res[(res["mode"] == mode) & (res["query_id"].astype(str) == qid) & (res["top_k"] == k)
                  & (res["pipeline_id"].astype(str) == pipeline)]
        req = self._requests
        rq = req[(req["mode"] == mode) & (req["query_id"].astype(str) == qid) & (req["top_k"] == k)
                 & (req["pipeline_id"].astype(str) == pipeline)]
        head = f"<h4 style='margin:4px 0'>{esc(mode)}</h4>"
        if len(rq):
            r = rq.iloc[0]
            shared = " (shared)" if bool(r.get("shared", False)) else ""
            head += f"<div class='le-muted'>latency {float(r['latency_s']) * 1000:.1f} ms{shared} · status {esc(r['status'])}</div>"
            if r.get("error") is not None and str(r.get("error")) not in ("", "nan", "None", "<NA>"):
                head += f"<div class='le-err'>{esc(r['error'])}</div>"
        sel = sel.dropna(subset=["doc_id"]).sort_values("rank")
        rows = []
        found = set()
        for _, hit in sel.iterrows():
            doc = str(hit["doc_id"])
            grade = grades.get(doc, 0)
            if grade > 0:
                found.add(doc)
            cls = f" class='le-rel{min(grade, 2)}'" if grade > 0 else ""
            title = _truncate(self._titles.get(doc, ""), 50)
            rows.append(f"<tr{cls}><td>{int(hit['rank'])}</td><td>{esc(doc)}</td><td>{esc(title)}</td>"
                        f"<td>{float(hit['score']):.4f}</td><td>{grade if grade else ''}</td></tr>")
        table = ("<table class='le-t'><tr><th>rank</th><th>doc_id</th><th>title</th><th>score</th>"
                 "<th>rel</th></tr>" + "".join(rows) + "</table>") if rows else "<p class='le-muted'>no results</p>"
        relevant = [d for d, g in grades.items() if g > 0]
        missed = [d for d in relevant if d not in found]
        foot = f"<div>found {len(found)}/{len(relevant)} relevant</div>"
        if missed:
            foot += f"<div class='le-muted'>missed: {esc(', '.join(sorted(missed)[:15]))}</div>"
        return f"<div style='flex:1;min-width:260px' data-mode='{esc(mode)}'>{head}{table}{foot}</div>"

    def update(self) -> None:
        """Redraw ``view`` for the current query, top_k and pipeline."""
        qid, k, pipeline = str(self.query.value), int(self.top_k.value), str(self.pipeline.value)
        qrels = self._qrels[self._qrels["query_id"].astype(str) == qid]
        grades = {str(d): int(g) for d, g in zip(qrels["doc_id"], qrels["relevance"])}
        cols = "".join(self._column(m, qid, k, pipeline, grades) for m in self.modes)
        self.view.value = (STYLE + TABLE_STYLE + "<div class='le-card' style='max-width:none'>"
                           + f"<p><b>{esc(qid)}</b>: {esc(self._texts.get(qid, ''))}</p>"
                           + f"<div style='display:flex;gap:12px;flex-wrap:wrap'>{cols}</div></div>")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def query_inspector(run: Any, *, corpus: Any = None, query_id: str | None = None) -> QueryInspector:
    """Inspect one query of a run at a time: every mode's ranking, relevant documents highlighted."""
    return QueryInspector(run, corpus=corpus, query_id=query_id)
