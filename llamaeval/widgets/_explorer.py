"""Pipeline explorer: projects → pipelines → files, jobs, data sources, sinks; refresh."""

from __future__ import annotations

from typing import Any

from llamaeval._errors import LlamaEvalError
from llamaeval._display import STYLE, frame_html
from llamaeval.widgets._html import error_html, esc

TABS: tuple[str, ...] = ("files", "jobs", "data sources", "data sinks")
_TABLE_ROWS = 50  # rows per tab (the rest are counted); the tab scrolls inside this height
_TABLE_HEIGHT_PX = 320


def _options(frame: Any) -> list[tuple[str, str]]:
    """Dropdown options ``(label, id)`` from a list frame with ``id`` and ``name`` columns."""
    if frame is None or len(frame) == 0:
        return []
    names = frame["name"] if "name" in frame.columns else frame["id"]
    return [(f"{n} · {str(i)[:8]}", str(i)) for n, i in zip(names.astype(str), frame["id"].astype(str))]


class PipelineExplorer:
    """Browse an account through a ``LlamaCloud`` client.

    ``project`` and ``pipeline`` are dropdowns; ``details`` shows the pipeline record as a
    compact card (status, counts, retrieval config folded); ``tables[name]`` for each of TABS
    (ids shortened, at most 50 rows, scrolling inside 320 px); ``refresh``
    (a Button) reloads everything. API errors show in ``status`` instead of raising.
    """

    def __init__(self, client: Any, *, project_id: str | None = None) -> None:
        import ipywidgets as w

        self.client = client
        self.project = w.Dropdown(options=[], description="project", layout=w.Layout(width="45%"))
        self.pipeline = w.Dropdown(options=[], description="pipeline", layout=w.Layout(width="45%"))
        self.refresh = w.Button(description="refresh", icon="refresh")
        self.status = w.HTML()
        self.details = w.HTML()
        self.tables = {name: w.HTML() for name in TABS}
        self.tabs = w.Tab(children=[self.tables[n] for n in TABS])
        for i, name in enumerate(TABS):
            self.tabs.set_title(i, name)
        self._quiet = False  # True while options are replaced programmatically
        self.project.observe(lambda _c: self._quiet or self._load_pipelines(), names="value")
        self.pipeline.observe(lambda _c: self._quiet or self._load_pipeline(), names="value")
        self.refresh.on_click(lambda _b: self.reload())
        self.widget = w.VBox([w.HBox([self.project, self.pipeline, self.refresh]), self.status,
                              self.details, self.tabs])
        self.reload(project_id=project_id)

    def _set(self, dropdown: Any, options: list[tuple[str, str]], value: str | None) -> None:
        self._quiet = True
        try:
            dropdown.options = options
            dropdown.value = value
        finally:
            self._quiet = False

    def _fail(self, exc: BaseException) -> None:
        self.status.value = error_html(exc)

    def reload(self, project_id: str | None = None) -> None:
        """Reload projects (keeping the current selection if it still exists), then the rest."""
        keep_project = project_id or self.project.value
        keep_pipeline = self.pipeline.value
        self.status.value = ""
        try:
            options = _options(self.client.projects.list())
        except LlamaEvalError as exc:
            self._fail(exc)
            return
        ids = [i for _, i in options]
        self._set(self.project, options, keep_project if keep_project in ids else (ids[0] if ids else None))
        self._load_pipelines(keep=keep_pipeline)

    def _load_pipelines(self, keep: str | None = None) -> None:
        project_id = self.project.value
        options: list[tuple[str, str]] = []
        if project_id is not None:
            try:
                options = _options(self.client.pipelines.list(project_id))
            except LlamaEvalError as exc:
                self._fail(exc)
        ids = [i for _, i in options]
        value = keep if keep in ids else (ids[0] if ids else None)
        self._set(self.pipeline, options, value)
        self._load_pipeline()

    def _load_pipeline(self) -> None:
        pid = self.pipeline.value
        if pid is None:
            self.details.value = "<p class='le-muted'>no pipeline in this project</p>"
            for table in self.tables.values():
                table.value = ""
            return
        api = self.client.pipelines
        loaders = {
            "files": lambda: api.files.list(pid),
            "jobs": lambda: api.jobs.list(pid),
            "data sources": lambda: api.data_sources.list(pid),
            "data sinks": lambda: api.data_sinks.list(pid),
        }
        try:
            record = api.get(pid)
            # a compact card: configs folded (the learned ranker's weights are one click away)
            self.details.value = record._repr_html_()
        except LlamaEvalError as exc:
            self._fail(exc)
            self.details.value = ""
        for name, load in loaders.items():
            try:
                frame = load()
                if not hasattr(frame, "columns"):  # a list of records
                    import pandas as pd

                    frame = pd.concat([r.to_frame() for r in frame], ignore_index=True) if frame else pd.DataFrame()
                self.tables[name].value = (
                    f"<p>{len(frame)} {esc(name)}</p>" + STYLE
                    + f"<div class='le-card' style='max-height:{_TABLE_HEIGHT_PX}px;overflow:auto'>"
                    + frame_html(frame, max_rows=_TABLE_ROWS) + "</div>")
            except LlamaEvalError as exc:
                self.tables[name].value = error_html(exc)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def pipeline_explorer(client: Any, *, project_id: str | None = None) -> PipelineExplorer:
    """Browse projects, pipelines, their files, jobs, data sources and sinks (display in Jupyter)."""
    return PipelineExplorer(client, project_id=project_id)
