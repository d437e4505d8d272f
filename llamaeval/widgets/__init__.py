"""Jupyter widgets (ipywidgets) over a client or a benchmark run.

    dashboard(run)             metric, cutoff and modes → chart and table update
    query_inspector(run)       one query, every mode's results side by side
    pipeline_explorer(client)  projects → pipelines → files, jobs, data sources, sinks
    judge(pool, out)           judge pooled documents: grade buttons/keys, skip, undo, saved at once

Each returns an object whose ``.widget`` is the ipywidgets box (it also displays
itself); its controls are attributes, so code and tests can drive it.
"""

from llamaeval.widgets._dashboard import BenchmarkDashboard, dashboard
from llamaeval.widgets._explorer import PipelineExplorer, pipeline_explorer
from llamaeval.widgets._inspector import QueryInspector, query_inspector
from llamaeval.widgets._judge import JudgingWidget, judge

__all__ = [
    "dashboard",
    "query_inspector",
    "pipeline_explorer",
    "judge",
    "BenchmarkDashboard",
    "QueryInspector",
    "PipelineExplorer",
    "JudgingWidget",
]
