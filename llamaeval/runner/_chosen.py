"""The retrieve request a saved run sent for one of its configurations: what shipping that
configuration must reproduce (see ``llamaeval.metrics._apply``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llamaeval._errors import ConfigurationError
from llamaeval._keys import CONFIG_KEY
from llamaeval.runner._configs import Configuration

__all__ = ["BenchmarkedRequest", "benchmarked_request"]


@dataclass(frozen=True)
class BenchmarkedRequest:
    """What a benchmark sent to ``retrieve`` for one configuration.

    ``name`` is the configuration's name (the ``mode`` column); ``mode`` the retrieval mode
    sent (None: its parameters alone); ``params`` every other retrieve parameter sent (the
    run's ``retrieve_params`` and the configuration's own). ``sent_top_k`` is the top_k of
    the request actually sent: larger than ``top_k`` when the rows were cut from a larger
    request (``share_k``). ``dialect`` is the API the run spoke (None: not recorded).
    ``pipeline_presets`` are the benchmarked pipeline's ``preset_retrieval_parameters`` at
    benchmark time, which filled what the request omitted (None: not recorded, or the
    simplified API, which has none)."""

    pipeline_id: str
    name: str
    mode: str | None
    top_k: int
    params: Mapping[str, Any] = field(default_factory=dict)
    sent_top_k: int | None = None
    dialect: str | None = None
    pipeline_presets: Mapping[str, Any] | None = None

    def retrieve_arguments(self) -> dict[str, Any]:
        """The keyword arguments of the benchmarked ``retrieve``: ``mode``, ``top_k``, the parameters."""
        return Configuration(self.name, self.mode, dict(self.params)).retrieve_arguments(self.top_k)

    @property
    def shared(self) -> bool:
        """True when the benchmark cut these rows from a request of a larger top_k."""
        return self.sent_top_k is not None and self.sent_top_k > self.top_k


def benchmarked_request(run: Any, selector: Mapping[str, Any]) -> BenchmarkedRequest:
    """The request ``run`` (a BenchmarkRun) sent for the ONE configuration ``selector`` names
    (a dict of ``pipeline_id``/``mode``/``top_k``, values compared as text, e.g. a
    recommendation's ``choice``). ConfigurationError when it names none or several."""
    if not isinstance(selector, Mapping):
        raise ConfigurationError(f"selector must be a dict of {', '.join(CONFIG_KEY)}, got {type(selector).__name__}")
    unknown = sorted(set(selector) - set(CONFIG_KEY))
    if unknown:
        raise ConfigurationError(f"selector has unknown key(s) {unknown}; configuration keys are {list(CONFIG_KEY)}")
    configs = run.configurations
    mask = None
    for key, value in selector.items():
        match = configs[key].astype(str) == str(value)
        mask = match if mask is None else mask & match
    rows = configs[mask] if mask is not None else configs
    if len(rows) != 1:
        shown = ", ".join(f"{k}={v}" for k, v in selector.items())
        raise ConfigurationError(f"{shown or 'an empty selector'} names {len(rows)} configurations of the run, "
                                 "not one: give pipeline_id, mode (the configuration's name) and top_k")
    row = rows.iloc[0]
    pid, name, top_k = str(row["pipeline_id"]), str(row["mode"]), int(row["top_k"])
    manifest = run.manifest or {}
    parameters = manifest.get("parameters") or {}
    defined = {c.get("name"): c for c in parameters.get("configurations") or []}
    conf = defined.get(name) or {"name": name, "mode": name, "params": {}}  # runs before parameter sets: modes
    common = dict(parameters.get("retrieve_params") or {})
    pipes = {p.get("id"): p for p in manifest.get("pipelines") or [] if isinstance(p, Mapping)}
    presets = (pipes.get(pid) or {}).get("preset_retrieval_parameters")
    return BenchmarkedRequest(
        pipeline_id=pid, name=name, mode=conf.get("mode"), top_k=top_k,
        params={**common, **dict(conf.get("params") or {})}, sent_top_k=_sent_top_k(run.requests, pid, name, top_k),
        dialect=(manifest.get("client") or {}).get("dialect"),
        pipeline_presets=dict(presets) if isinstance(presets, Mapping) else None)


def _sent_top_k(requests: Any, pipeline_id: str, name: str, top_k: int) -> int:
    """The top_k of the request whose results these rows are: the largest sent for the
    configuration when every row at ``top_k`` was cut from a larger one (share_k)."""
    if "shared" not in requests.columns or not len(requests):
        return top_k
    same = (requests["pipeline_id"].astype(str) == pipeline_id) & (requests["mode"].astype(str) == name)
    cell = requests[same & (requests["top_k"].astype(int) == top_k)]
    shared = cell["shared"].fillna(False).astype(bool)
    if not len(cell) or not shared.all():
        return top_k
    sent = requests[same & ~requests["shared"].fillna(False).astype(bool)]["top_k"]
    return int(sent.max()) if len(sent) else top_k
