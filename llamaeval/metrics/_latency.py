"""Latency statistics per configuration, with seeded bootstrap confidence intervals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from llamaeval._errors import EvaluationError
from llamaeval.metrics._frames import config_columns, require_frame, sort_configs

__all__ = ["latency_stats"]

_PERCENTILES = (50, 90, 95, 99)
_CI_STATS = ("mean_s", "p50_s", "p90_s", "p95_s", "p99_s", "throughput_rps")
_SHARED_CHOICES = ("include", "exclude")


def _successful(requests: pd.DataFrame) -> pd.Series:
    """Mask of requests that answered: HTTP 2xx (when ``status`` is present) and no ``error`` text."""
    ok = pd.Series(True, index=requests.index)
    if "status" in requests.columns:
        status = pd.to_numeric(requests["status"], errors="coerce")
        ok &= status.between(200, 299)
    if "error" in requests.columns:
        error = requests["error"]
        ok &= error.isna() | (error.astype(str).str.strip() == "")
    return ok


def _bootstrap(values: np.ndarray, confidence: float, n_boot: int, seed: int) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap CIs of mean, p50..p99 and 1/mean; a fresh ``seed`` per configuration."""
    rng = np.random.default_rng(seed)
    n = len(values)
    chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))  # bound memory: <= ~16 MB per block
    means, pcts = [], []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        sample = values[rng.integers(0, n, size=(size, n))]
        means.append(sample.mean(axis=1))
        pcts.append(np.percentile(sample, _PERCENTILES, axis=1).T)
    mean = np.concatenate(means)
    pct = np.concatenate(pcts)
    lo_q, hi_q = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    out = {"mean_s": tuple(np.percentile(mean, [lo_q, hi_q]))}
    for i, p in enumerate(_PERCENTILES):
        out[f"p{p}_s"] = tuple(np.percentile(pct[:, i], [lo_q, hi_q]))
    lo, hi = out["mean_s"]
    out["throughput_rps"] = (1.0 / hi if hi > 0 else np.inf, 1.0 / lo if lo > 0 else np.inf)
    return out


def latency_stats(requests: pd.DataFrame, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0,
                  *, shared: str = "include", column: str = "latency_s") -> pd.DataFrame:
    """Client latency (``latency_s``, seconds) per configuration (``pipeline_id, mode, top_k``),
    rows in the display order of :func:`evaluate`.

    ``column`` picks another duration column instead (e.g. ``"server_total_s"`` or a
    stage such as ``"server_embed_s"``); the output names stay ``mean_s``, ``p50_s``, ...

    Counted: successful requests only (HTTP 2xx and no ``error``); failed ones are
    reported in ``n_failed``. Rows marked ``warmup`` (when the runner records that column;
    the runner normally leaves warm-ups out of ``requests``) are excluded and counted in
    ``n_warmup``. Shared latency (runner ``share_k``): a row with ``shared`` True is a
    COPY - its results were cut from a request sent at a larger ``top_k`` and its
    latency is that request's. ``shared="include"`` (default) counts copies, so a smaller top_k shows the
    latency actually paid for it in this run (``n_shared`` says how many rows are copies);
    ``shared="exclude"`` drops them, keeping only the configuration that sent the request
    (a configuration left with none gets NaN statistics).

    Columns: ``n``, ``n_failed``, ``n_warmup``, ``n_shared``, ``mean_s``, ``p50_s``,
    ``p90_s``, ``p95_s``, ``p99_s``, ``max_s`` (percentiles by linear interpolation),
    ``throughput_rps`` = 1 / ``mean_s`` (requests per second of ONE sequential client),
    ``wall_rps`` = requests / (last finish - first ``started_at``) as observed under
    the run's concurrency (NaN without ``started_at``; comparable across configurations
    only if they ran one after another), ``server_mean_s``/``server_p50_s`` when
    ``server_total_s`` is present, and ``<stat>_low``/``<stat>_high`` percentile-bootstrap
    CIs (``confidence``, ``n_boot`` resamples, generator seeded with ``seed`` afresh for
    every configuration, so a configuration's CI does not depend on the others).
    """
    require_frame(requests, "requests", (column,))
    if not 0 < confidence < 1:
        raise EvaluationError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise EvaluationError(f"n_boot must be >= 1, got {n_boot}")
    if shared not in _SHARED_CHOICES:
        raise EvaluationError(f"shared must be one of {_SHARED_CHOICES}, got {shared!r}")
    frame = requests.copy()
    # wall span always uses the client's wall time when there is one
    frame["_client_s"] = pd.to_numeric(frame["latency_s" if "latency_s" in frame.columns else column], errors="coerce")
    frame["latency_s"] = pd.to_numeric(frame[column], errors="coerce")
    if (frame["latency_s"] < 0).any():
        raise EvaluationError(f"{column} holds negative durations")
    frame["_ok"] = _successful(frame)
    frame["_warmup"] = frame["warmup"].fillna(False).astype(bool) if "warmup" in frame.columns else False
    frame["_shared"] = _copies(frame)
    cols = config_columns(frame)
    groups = frame.groupby(cols, sort=False, dropna=False) if cols else [((), frame)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(cols, key))
        measured = group[~group["_warmup"]]
        row["n_warmup"] = int(group["_warmup"].sum())
        row["n_failed"] = int((~measured["_ok"]).sum())
        used = measured[measured["_ok"]]
        row["n_shared"] = int(used["_shared"].sum())
        if shared == "exclude":
            used = used[~used["_shared"]]
        used = used[used["latency_s"].notna()]  # e.g. no Server-Timing stage in this response
        values = used["latency_s"].to_numpy(np.float64)
        row["n"] = len(values)
        row.update(_stats(values, used, confidence, n_boot, seed))
        rows.append(row)
    order = [*cols, "n", "n_failed", "n_warmup", "n_shared", "mean_s", "p50_s", "p90_s", "p95_s", "p99_s",
             "max_s", "throughput_rps", "wall_rps", "server_mean_s", "server_p50_s",
             *[f"{s}_{b}" for s in _CI_STATS for b in ("low", "high")]]
    table = sort_configs(pd.DataFrame(rows))
    return table[[c for c in order if c in table.columns]]


def _copies(frame: pd.DataFrame) -> pd.Series:
    """Rows whose latency was measured by a request at a larger ``top_k`` (runner ``shared``)."""
    if "shared" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["shared"].fillna(False).astype(bool)


def _stats(values: np.ndarray, used: pd.DataFrame, confidence: float, n_boot: int, seed: int) -> dict[str, float]:
    nan = float("nan")
    out: dict[str, float] = {}
    if len(values) == 0:
        out.update({k: nan for k in ("mean_s", "p50_s", "p90_s", "p95_s", "p99_s", "max_s",
                                     "throughput_rps", "wall_rps")})
    else:
        out["mean_s"] = float(values.mean())
        for p, v in zip(_PERCENTILES, np.percentile(values, _PERCENTILES)):
            out[f"p{p}_s"] = float(v)
        out["max_s"] = float(values.max())
        out["throughput_rps"] = 1.0 / out["mean_s"] if out["mean_s"] > 0 else float("inf")
        out["wall_rps"] = _wall_rps(used)
    if "server_total_s" in used.columns:
        server = pd.to_numeric(used["server_total_s"], errors="coerce").dropna().to_numpy(np.float64)
        out["server_mean_s"] = float(server.mean()) if len(server) else nan
        out["server_p50_s"] = float(np.percentile(server, 50)) if len(server) else nan
    if len(values) >= 2:
        for stat, (lo, hi) in _bootstrap(values, confidence, n_boot, seed).items():
            out[f"{stat}_low"], out[f"{stat}_high"] = float(lo), float(hi)
    else:
        out.update({f"{s}_{b}": nan for s in _CI_STATS for b in ("low", "high")})
    return out


def _wall_rps(used: pd.DataFrame) -> float:
    """Requests per second over the wall span first start .. last finish (NaN without ``started_at``)."""
    if "started_at" not in used.columns:
        return float("nan")
    started = pd.to_datetime(used["started_at"], utc=True, errors="coerce")
    valid = started.notna()
    if valid.sum() == 0:
        return float("nan")
    start = started[valid]
    finish = start + pd.to_timedelta(used.loc[valid, "_client_s"].fillna(0.0), unit="s")
    span = (finish.max() - start.min()).total_seconds()
    return float(valid.sum() / span) if span > 0 else float("nan")
