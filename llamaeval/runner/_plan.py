"""The request plan: which (pipeline, configuration, top_k, query) requests to send, in which order.

Every request of the grid is shuffled together with one seeded RNG, so the
configurations (and top_k values, and pipelines) are interleaved over the whole run and
slow drift of the machine or server does not favour one of them. A configuration is
named by its ``mode`` field (see :mod:`llamaeval.runner._configs`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Key = tuple[str, str, int, str]  # (pipeline_id, mode = configuration name, top_k, query_id)


@dataclass(frozen=True)
class PlannedRequest:
    """One retrieve request to send; ``mode`` is the configuration's name.
    ``shared``: its results also serve smaller top_k."""

    pipeline_id: str
    mode: str
    top_k: int
    query_id: str
    shared: bool
    order: int

    @property
    def key(self) -> Key:
        return (self.pipeline_id, self.mode, self.top_k, self.query_id)


def grid_cells(pipelines: Sequence[str], modes: Sequence[str], ks: Sequence[int],
               query_ids: Sequence[str]) -> list[Key]:
    """Every (pipeline, configuration, top_k, query) cell of the grid, in a stable (unshuffled) order."""
    return [(p, m, k, q) for p in pipelines for m in modes for k in ks for q in query_ids]


def build_plan(pipelines: Sequence[str], modes: Sequence[str], ks: Sequence[int],
               query_ids: Sequence[str], *, share_k: bool, seed: int) -> list[PlannedRequest]:
    """All requests of the grid in a seeded shuffled order (``order`` = position)."""
    if share_k:
        kmax = max(ks)
        keys = [(p, m, kmax, q) for p in pipelines for m in modes for q in query_ids]
    else:
        keys = grid_cells(pipelines, modes, ks, query_ids)
    random.Random(seed).shuffle(keys)
    return [PlannedRequest(p, m, k, q, share_k, i) for i, (p, m, k, q) in enumerate(keys)]


def sources(cells: Sequence[Key], sent: Iterable[Key], *, share_k: bool) -> dict[Key, Key]:
    """For each cell, the key of the sent request that answers it (cells not yet answered are absent).

    Without share_k only the exact request counts; with share_k the smallest sent
    top_k >= the cell's top_k for the same (pipeline, configuration, query) answers it.
    """
    sent = set(sent)
    if not share_k:
        return {c: c for c in cells if c in sent}
    by_group: dict[tuple[str, str, str], list[int]] = {}
    for p, m, k, q in sent:
        by_group.setdefault((p, m, q), []).append(k)
    for ks in by_group.values():
        ks.sort()
    out: dict[Key, Key] = {}
    for cell in cells:
        p, m, k, q = cell
        for sent_k in by_group.get((p, m, q), ()):
            if sent_k >= k:
                out[cell] = (p, m, sent_k, q)
                break
    return out


def missing_requests(plan: Iterable[PlannedRequest], cells: Sequence[Key],
                     done: Mapping[Key, object], *, share_k: bool) -> list[PlannedRequest]:
    """The planned requests still needed for some cell of the grid, in plan order."""
    if not share_k:
        return [r for r in plan if r.key not in done]
    # Index done requests by (pipeline, mode, query) -> largest sent top_k.
    largest: dict[tuple[str, str, str], int] = {}
    for p, m, k, q in done:
        largest[(p, m, q)] = max(k, largest.get((p, m, q), 0))
    uncovered = {(p, m, q) for p, m, k, q in cells if largest.get((p, m, q), 0) < k}
    return [r for r in plan if (r.pipeline_id, r.mode, r.query_id) in uncovered]


def warmup_requests(pipelines: Sequence[str], modes: Sequence[str], ks: Sequence[int],
                    query_ids: Sequence[str], n: int, seed: int) -> list[PlannedRequest]:
    """``n`` warm-up requests per (pipeline, configuration) at the largest top_k, queries drawn with ``seed``."""
    if n <= 0 or not query_ids:
        return []
    rng = random.Random(seed + 1)
    kmax = max(ks)
    out = []
    for p in pipelines:
        for m in modes:
            for _ in range(n):
                out.append(PlannedRequest(p, m, kmax, rng.choice(list(query_ids)), False, -1))
    rng.shuffle(out)
    return out
