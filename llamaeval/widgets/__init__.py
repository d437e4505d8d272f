"""Jupyter widgets (ipywidgets) over a client or a benchmark run.

    dashboard(run)             metric, cutoff and modes → chart and table update
    query_inspector(run)       one query, every mode's results side by side
    pipeline_explorer(client)  projects → pipelines → files, jobs, data sources, sinks

Each returns an object whose ``.widget`` is the ipywidgets box (it also displays
itself); its controls are attributes, so code and tests can drive it.
"""

from llamaeval.widgets._dashboard import BenchmarkDashboard, dashboard
from llamaeval.widgets._explorer import PipelineExplorer, pipeline_explorer
from llamaeval.widgets._inspector import QueryInspector, query_inspector

__all__ = [
    "dashboard",
    "query_inspector",
    "pipeline_explorer",
    "BenchmarkDashboard",
    "QueryInspector",
    "PipelineExplorer",
]
