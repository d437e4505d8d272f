"""Ship a recommendation: the chosen configuration written as a pipeline's
``preset_retrieval_parameters``, so a retrieve without parameters sends what was benchmarked.

The presets are the real retrieve request of the configuration, built by the client's one rule
(:func:`llamaeval.client._llamacloud.retrieve_parameters`: the mode's preset, the parameters,
``top_k`` as ``rerank_top_n`` with reranking, else the candidate counts), laid over the presets
the benchmarked pipeline had then (which filled what the request omitted). The simplified API
has no presets: the plan then lists the arguments to pass to every retrieve instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd

from llamaeval._display import STYLE, config_label, esc, frame_html, id_html, short_id
from llamaeval._errors import ConfigurationError
from llamaeval.client._config import LLAMACLOUD
from llamaeval.client._llamacloud import RETRIEVE_PARAMS, retrieve_parameters

__all__ = ["ShipPlan", "apply_recommendation"]

_UNSET = "(unset)"


@dataclass
class ShipPlan:
    """What shipping a configuration to a pipeline changes (or changed).

    ``configuration`` is the chosen configuration's label; ``dialect`` the API of ``client``.
    Real API: ``current`` / ``recommended`` are the pipeline's ``preset_retrieval_parameters``
    before and as recommended, ``changes`` one row per parameter that differs (``parameter``,
    ``current``, ``recommended``, ``change``: added, changed, removed), ``written`` whether they
    were stored (never with ``dry_run``) and ``stored`` what the service answered. Simplified
    API: no presets (``recommended`` None), ``retrieve_arguments`` are what to pass to every
    ``retrieve``. ``notes`` say where the shipped request can differ from the measured one.
    ``str(plan)`` is a short text (the CLI prints it); in a notebook it renders as a card."""

    pipeline_id: str
    pipeline_name: str | None
    configuration: str
    dialect: str
    retrieve_arguments: dict[str, Any]
    current: dict[str, Any] | None
    recommended: dict[str, Any] | None
    changes: pd.DataFrame = field(repr=False)
    dry_run: bool = True
    written: bool = False
    stored: dict[str, Any] | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)

    @property
    def has_presets(self) -> bool:
        """False in the simplified API, which has no ``preset_retrieval_parameters``."""
        return self.recommended is not None

    @property
    def headline(self) -> str:
        """One sentence: what was (or would be) done."""
        target = f"pipeline {self.pipeline_name or short_id(self.pipeline_id)}"
        if not self.has_presets:
            return (f"The simplified API has no preset_retrieval_parameters: nothing was written to {target}. "
                    f"Pass {self.call_text()} with every retrieve to use {self.configuration}.")
        n = len(self.changes)
        if n == 0:
            return f"{target}'s preset_retrieval_parameters already send {self.configuration}: nothing to change."
        what = f"{n} preset_retrieval_parameter{'s' if n != 1 else ''}"
        if self.written:
            return (f"Wrote {what} to {target}: a retrieve without parameters now sends {self.configuration}.")
        return (f"Dry run: {what} of {target} would change to send {self.configuration} by default; "
                "nothing was written.")

    def call_text(self) -> str:
        """The retrieve call with the chosen arguments, as Python."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.retrieve_arguments.items() if v is not None)
        return f"lc.pipelines.retrieve(pipeline_id, query{', ' + args if args else ''})"

    def __str__(self) -> str:
        lines = [self.headline]
        if self.has_presets and len(self.changes):
            width = max(len(str(p)) for p in self.changes["parameter"])
            lines.append("preset_retrieval_parameters:")
            for r in self.changes.itertuples(index=False):
                lines.append(f"  {r.parameter:<{width}}  {r.current} -> {r.recommended}")
        lines += [f"note: {n}" for n in self.notes]
        if self.has_presets and len(self.changes) and not self.written:
            lines.append("To write them: apply again with dry_run=False (shell: llamaeval ship ... --yes).")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [("pipeline", f"<b>{esc(self.pipeline_name or '')}</b> {id_html(self.pipeline_id)}"),
                ("configuration", esc(self.configuration)),
                ("API", esc(self.dialect))]
        if self.has_presets:
            state = ("written" if self.written else "dry run: nothing written" if self.dry_run and len(self.changes)
                     else "unchanged")
            rows.append(("presets", esc(state)))
        else:
            rows.append(("retrieve with", f"<code>{esc(self.call_text())}</code>"))
        body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
        cls = "le-rec" if self.has_presets else "le-warn"
        table = (frame_html(self.changes, max_rows=len(self.changes)) if self.has_presets and len(self.changes)
                 else "")
        notes = "".join(f"<p class='le-muted'>{esc(n)}</p>" for n in self.notes)
        return (f"{STYLE}<div class='le-card' data-le='ship-plan'><h4>ShipPlan</h4>"
                f"<div class='{cls}'>{esc(self.headline)}</div><table class='le-kv'>{body}</table>"
                f"{table}{notes}</div>")


def apply_recommendation(rec: Any, client: Any, pipeline_id: str, *, dry_run: bool = True) -> ShipPlan:
    """Ship ``rec``'s choice to ``pipeline_id``: show the difference between the pipeline's
    ``preset_retrieval_parameters`` and the ones that make a retrieve without parameters send
    the benchmarked request, and unless ``dry_run`` write them (``client.pipelines.update``).

    ``rec`` is a recommendation made by ``BenchmarkRun.recommend`` (it carries the request
    the run sent for its choice: ``rec.benchmarked_request``); ``client`` a sync
    ``LlamaCloud``. In the simplified API nothing is written: the plan lists the retrieve
    arguments to pass instead. Raises ConfigurationError when the choice has no equivalent in
    the real API (``advanced``, a parameter it does not know, top_k above its maximum).
    """
    from llamaeval.client import LlamaCloud

    if not isinstance(dry_run, bool):
        raise ConfigurationError(f"dry_run must be True or False, got {dry_run!r}")
    if not isinstance(client, LlamaCloud):
        raise ConfigurationError(f"client must be a llamaeval.LlamaCloud (sync), got {type(client).__name__}")
    request = rec.benchmarked_request
    if request is None:
        raise ConfigurationError(
            "this recommendation does not know the retrieve request its configuration sent (it was made from "
            "frames alone): make it with run.recommend(...), or call run.ship(client, pipeline_id, ...)")
    if not isinstance(pipeline_id, str) or not pipeline_id.strip():
        raise ConfigurationError(f"pipeline_id must be a non-empty string, got {pipeline_id!r}")
    names = getattr(rec, "names", None) or {}
    label = config_label(request.name, request.top_k)
    pipe = client.pipelines.get(pipeline_id)  # the id exists (NotFoundError otherwise); decides the dialect
    arguments = request.retrieve_arguments()
    notes = _notes(request, pipeline_id, names)
    if client.dialect != LLAMACLOUD:
        known = sorted(set(request.params) & set(RETRIEVE_PARAMS))
        if known:
            notes.append(f"{', '.join(known)} are parameters of the real LlamaCloud API, which the simplified API "
                         "does not take: the local server serves the real API under <base_url>/cloud")
        return ShipPlan(pipeline_id=pipeline_id, pipeline_name=pipe.name, configuration=label,
                        dialect=str(client.dialect), retrieve_arguments=arguments, current=None, recommended=None,
                        changes=_diff({}, {}), dry_run=dry_run, notes=notes)
    current = _set_fields(pipe.extra.get("preset_retrieval_parameters"))
    base = _set_fields(request.pipeline_presets) if request.pipeline_presets is not None else current
    recommended = {**base, **retrieve_parameters(request.mode, request.top_k, request.params)}
    changes = _diff(current, recommended)
    plan = ShipPlan(pipeline_id=pipeline_id, pipeline_name=pipe.name, configuration=label, dialect=LLAMACLOUD,
                    retrieve_arguments=arguments, current=current, recommended=recommended, changes=changes,
                    dry_run=dry_run, notes=notes)
    if dry_run or not len(changes):
        return plan
    updated = client.pipelines.update(pipeline_id, preset_retrieval_parameters=recommended)
    plan.stored = _set_fields(updated.extra.get("preset_retrieval_parameters"))
    plan.written = True
    differs = sorted(k for k, v in recommended.items() if not _same(plan.stored.get(k), v))
    if differs:
        plan.notes.append(f"the service stored other values than sent for {', '.join(differs)}: "
                          f"{ {k: plan.stored.get(k) for k in differs} }")
    return plan


def _notes(request: Any, pipeline_id: str, names: Mapping[str, str]) -> list[str]:
    """Where the shipped request can differ from the measured one."""
    notes = []
    if request.shared:
        notes.append(f"the benchmark measured top_k={request.top_k} as the first {request.top_k} nodes of top_k="
                     f"{request.sent_top_k} requests (share_k); these presets ask for {request.top_k} nodes, and the "
                     "service's candidate pools follow the node count, so its ranking can differ from the measured "
                     "cut: to ship exactly what was measured, benchmark without share_k (shell: --no-share-k)")
    if request.dialect is not None and request.dialect != LLAMACLOUD and request.mode is not None:
        notes.append(f"the run was measured through the {request.dialect} API (mode {request.mode!r}); in the real "
                     f"API these presets are that mode's equivalent knobs (llamaeval.client.MODE_PRESETS), not the "
                     "measured request")
    if str(request.pipeline_id) != pipeline_id:
        bench = names.get(str(request.pipeline_id)) or short_id(request.pipeline_id)
        notes.append(f"the benchmark ran on pipeline {bench}, not this one: it ranks as measured only if it holds "
                     "the same documents, chunked and embedded the same way")
    if request.pipeline_presets is None and (request.dialect in (None, LLAMACLOUD)):
        notes.append("the run did not record the benchmarked pipeline's presets: the fields its request left to "
                     "them keep this pipeline's current values")
    return notes


def _set_fields(presets: Any) -> dict[str, Any]:
    """The fields of a presets object that are set (null counts as omitted)."""
    if not isinstance(presets, Mapping):
        return {}
    return {str(k): v for k, v in presets.items() if v is not None}


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str) or (
        isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool)
        and not isinstance(b, bool) and float(a) == float(b))


def _diff(current: Mapping[str, Any], recommended: Mapping[str, Any]) -> pd.DataFrame:
    """One row per parameter that differs: parameter, current, recommended (as text), change."""
    rows = []
    for key in [*recommended, *(k for k in current if k not in recommended)]:
        now, new = current.get(key), recommended.get(key)
        if key in current and key in recommended and _same(now, new):
            continue
        change = "added" if key not in current else "removed" if key not in recommended else "changed"
        rows.append({"parameter": key, "current": _text(now) if key in current else _UNSET,
                     "recommended": _text(new) if key in recommended else _UNSET, "change": change})
    return pd.DataFrame(rows, columns=["parameter", "current", "recommended", "change"])


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)
