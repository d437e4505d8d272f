"""What ``benchmark(out=folder)`` does when the folder already holds a run: one rule for the
Python API (``on_existing=``) and the CLI (``bench --resume`` / ``--extend`` / ``--replace``).

- ``"resume"`` (default): continue the run saved or journaled there when this call asks for the
  same grid (configurations, top_k, pipelines): only the missing requests are sent. Any other
  grid is refused, naming the two other choices.
- ``"extend"``: benchmark the union — the saved configurations, top_k and pipelines, then the
  new ones (only the new requests are sent). A configuration name must mean the same request
  in both.
- ``"replace"``: discard the saved run (its run files only) and start afresh.

A run of another query set, ``retrieve_params``, mapping or ``share_k`` is another run: it is
never resumed or extended (``"replace"`` it, or use another folder).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamaeval._errors import ConfigurationError
from llamaeval.runner._configs import Configuration
from llamaeval.runner._journal import JOURNAL_NAME, read_journal

__all__ = ["ON_EXISTING", "RUN_FILES", "PYTHON", "CLI", "Spelling", "ResumeDecision", "resolve_existing",
           "discard_run", "identity", "adopt_journal"]

ON_EXISTING: tuple[str, ...] = ("resume", "extend", "replace")
MANIFEST_NAME = "manifest.json"
#: The files of a run folder (journal + saved run); "replace" removes these and nothing else.
RUN_FILES: frozenset[str] = frozenset({JOURNAL_NAME, MANIFEST_NAME, "results.parquet", "requests.parquet",
                                       "qrels.parquet", "queries.parquet", "records.parquet", "chunks.parquet"})


@dataclass(frozen=True)
class Spelling:
    """How a refusal names the choices: the Python argument or the CLI flags."""

    extend: str
    replace: str
    other: str


PYTHON = Spelling('on_existing="extend"', 'on_existing="replace"', "another `out` folder")
CLI = Spelling("--extend", "--replace", "another --out")


@dataclass(frozen=True)
class ResumeDecision:
    """What to benchmark in the folder: ``action`` is ``"new"`` (nothing saved), ``"resume"``
    (the same grid), ``"extend"`` or ``"replace"``; ``configurations``, ``top_k`` and
    ``pipelines`` the grid to run (the union when extending); ``message`` what was found and
    done (None for a new or plainly resumed run)."""

    action: str
    configurations: list[Configuration]
    top_k: list[int]
    pipelines: list[str] | None
    message: str | None = None


@dataclass(frozen=True)
class _Saved:
    configurations: list[Configuration]
    top_k: list[int]
    pipelines: list[str]
    fingerprint: dict[str, Any] | None
    complete: bool  # a finished run's manifest (else only a journal: its grid may be partly sent)


def identity(fingerprint: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a run's fingerprint that makes it another run (all but its configurations,
    which this module compares by name)."""
    return {k: v for k, v in (fingerprint or {}).items() if k != "configurations"}


def resolve_existing(folder: Path | None, configurations: Sequence[Configuration], top_k: Sequence[int],
                     pipelines: Sequence[str] | None, on_existing: str = "resume", *,
                     fingerprint: Mapping[str, Any] | None = None, spelling: Spelling = PYTHON) -> ResumeDecision:
    """Decide what a benchmark into ``folder`` runs (reads the folder, changes nothing).

    ``pipelines`` None = not known yet (the CLI before ingesting): not compared.
    ``fingerprint`` None = the run's identity is not checked here (the runner checks it).
    Raises ConfigurationError for a bad ``on_existing``, a run of another identity (unless
    replacing), a grid other than the saved one under ``"resume"``, and a configuration name
    that means another request under ``"extend"``.
    """
    if on_existing not in ON_EXISTING:
        raise ConfigurationError(f"on_existing must be one of {', '.join(map(repr, ON_EXISTING))}, "
                                 f"got {on_existing!r}")
    configs, ks = list(configurations), sorted(set(top_k))
    pipes = list(pipelines) if pipelines is not None else None
    saved = _saved(folder) if folder is not None else None
    if saved is None:
        return ResumeDecision("new", configs, ks, pipes)
    names = [c.name for c in configs]
    what = (f"{folder} holds a run of {_count(len(saved.configurations), 'configuration')} "
            f"({', '.join(c.name for c in saved.configurations)}) x top_k {','.join(map(str, saved.top_k))}")
    if on_existing == "replace":
        return ResumeDecision("replace", configs, ks, pipes,
                              f"{what}: replaced, starting afresh with {', '.join(names)} x top_k "
                              f"{','.join(map(str, ks))}")
    if fingerprint is not None and saved.fingerprint is not None \
            and identity(saved.fingerprint) != identity(fingerprint):
        raise ConfigurationError(
            f"{folder} holds a run with a different query set, retrieve_params, mapping or share_k "
            f"({identity(saved.fingerprint)}): it cannot be resumed or extended; pass {spelling.replace} to "
            f"discard it, or use {spelling.other}")
    by_name = {c.name: c for c in saved.configurations}
    clash = [c.name for c in configs if c.name in by_name and not _same_request(by_name[c.name], c)]
    if clash:
        name = clash[0]
        raise ConfigurationError(
            f"{what}, where configuration {name!r} is a different request ({_request(by_name[name])}) than in "
            f"this call ({_request(next(c for c in configs if c.name == name))}): give it another name, "
            f"pass {spelling.replace} to discard the saved run, or use {spelling.other}")
    if on_existing == "extend":
        union = [*saved.configurations, *(c for c in configs if c.name not in by_name)]
        union_ks = sorted(set(saved.top_k) | set(ks))
        union_pipes = list(dict.fromkeys([*saved.pipelines, *pipes])) if pipes is not None else None
        if [c.name for c in union] == [c.name for c in saved.configurations] and union_ks == saved.top_k \
                and (union_pipes is None or union_pipes == saved.pipelines) and saved.complete:
            return ResumeDecision("resume", union, union_ks, union_pipes)
        return ResumeDecision("extend", union, union_ks, union_pipes,
                              f"{what}: extended, benchmarking {', '.join(c.name for c in union)} x top_k "
                              f"{','.join(map(str, union_ks))} (only the new requests are sent)")
    dropped = ([f"configuration {c.name!r}" for c in saved.configurations if c.name not in names]
               + [f"top_k={k}" for k in saved.top_k if k not in ks]
               + ([f"pipeline {p}" for p in saved.pipelines if p not in pipes] if pipes is not None else []))
    added = ((set(names) - set(by_name)) or (set(ks) - set(saved.top_k))
             or (pipes is not None and set(pipes) - set(saved.pipelines)))
    if not dropped and (not added or not saved.complete):
        return ResumeDecision("resume", configs, ks, pipes)
    asks = f"this call asks for a different grid, {', '.join(names)} x top_k {','.join(map(str, ks))}"
    if dropped:
        return _refuse(f"{what}; {asks}, and would replace it, dropping {', '.join(dropped[:6])}"
                       f"{' …' if len(dropped) > 6 else ''}", spelling)
    return _refuse(f"{what}; {asks}", spelling)


def _refuse(text: str, spelling: Spelling) -> ResumeDecision:
    raise ConfigurationError(f"{text}. Pass {spelling.extend} to benchmark both (only the new requests are "
                             f"sent), {spelling.replace} to discard the saved run, or use {spelling.other}")


def discard_run(folder: Path) -> None:
    """Remove the run files of ``folder`` (and their temporary twins); nothing else."""
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
        (folder / (name + ".tmp")).unlink(missing_ok=True)


def adopt_journal(folder: Path, fingerprint: Mapping[str, Any]) -> None:
    """Give an unfinished journal the header of an extended run (its records stay): the run it
    continues now has more configurations."""
    path = folder / JOURNAL_NAME
    old, records = read_journal(path)
    if old is None or old == dict(fingerprint) or identity(old) != identity(fingerprint):
        return  # nothing to adopt, or another run's journal (refused when it is read)
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"fingerprint": dict(fingerprint)}, separators=(",", ":")) + "\n")
        for rec in records:
            fh.write(json.dumps(rec, separators=(",", ":"), allow_nan=True) + "\n")
    os.replace(tmp, path)


# --- the saved grid ------------------------------------------------------------------------------

def _saved(folder: Path) -> _Saved | None:
    """The grid saved in ``folder``: a finished run's manifest, plus what an unfinished journal
    holds (the configurations its header defines, the cells its records sent). None: no run."""
    manifest_path = folder / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else None
    journal_fp, journaled = read_journal(folder / JOURNAL_NAME)
    if manifest is None and journal_fp is None:
        return None
    configs: dict[str, Configuration] = {}
    ks: set[int] = set()
    pipes: list[str] = []
    if manifest is not None:
        params = manifest.get("parameters") or {}
        defined = params.get("configurations") or [{"name": m, "mode": m, "params": {}}
                                                   for m in params.get("modes") or []]
        for c in defined:
            configs.setdefault(c["name"], Configuration(c["name"], c.get("mode"), dict(c.get("params") or {})))
        ks |= {int(k) for k in params.get("top_k") or []}
        pipes += [p.get("id") if isinstance(p, dict) else p for p in manifest.get("pipelines") or []]
    journal_defined = {c["name"]: c for c in (journal_fp or {}).get("configurations") or []}
    for rec in journaled:
        name = rec.get("mode")
        if name not in configs:
            c = journal_defined.get(name) or {"name": name, "mode": name, "params": {}}  # runs of modes alone
            configs[name] = Configuration(c["name"], c.get("mode"), dict(c.get("params") or {}))
        ks.add(int(rec.get("top_k")))
        pipes.append(rec.get("pipeline_id"))
    return _Saved(list(configs.values()), sorted(ks), list(dict.fromkeys(p for p in pipes if p)),
                  manifest.get("fingerprint") if manifest is not None else journal_fp, manifest is not None)


def _same_request(a: Configuration, b: Configuration) -> bool:
    return a.mode == b.mode and json.dumps(dict(a.params), sort_keys=True) == json.dumps(dict(b.params), sort_keys=True)


def _request(c: Configuration) -> str:
    parts = ([f"mode={c.mode}"] if c.mode is not None else []) + [f"{k}={v!r}" for k, v in c.params.items()]
    return ", ".join(parts) or "no parameters"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
