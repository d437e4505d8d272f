"""What the peer flows share (imported from the script's own folder, so it runs in any SDK venv):
step recording, context between steps, the small data set and a query only one document matches."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEPS: list[dict[str, Any]] = []
CTX: dict[str, Any] = {}
#: Ingestion statuses a flow stops polling at.
TERMINAL = {"SUCCESS", "ERROR", "PARTIAL_SUCCESS", "CANCELLED"}


class Skipped(Exception):
    pass


def need(*keys: str) -> list[Any]:
    missing = [k for k in keys if k not in CTX]
    if missing:
        raise Skipped(f"skipped: needs {', '.join(missing)} from an earlier step that failed")
    return [CTX[k] for k in keys]


def step(name: str, fn: Callable[[], Any]) -> Any:
    t0 = time.monotonic()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # SDKs print progress: stdout is for the JSON report
            out = fn()
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, the flow goes on
        err = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (Skipped, AssertionError)):
            err += "\n" + "".join(traceback.format_exception(exc)[-3:])
        STEPS.append({"name": name, "ok": False, "error": err[:3000]})
        print(f"FAIL {name}: {err.splitlines()[0][:300]}", file=sys.stderr)
        return None
    STEPS.append({"name": name, "ok": True, "error": None})
    print(f"ok   {name} ({time.monotonic() - t0:.2f}s)", file=sys.stderr)
    return out


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def poll(get: Callable[[], Any], deadline: float, status_of: Callable[[Any], str] = lambda st: st.status) -> Any:
    """Call ``get()`` every 0.5 s until ``status_of`` its answer is terminal; TimeoutError past
    ``deadline`` (``time.monotonic()`` seconds)."""
    while True:
        st = get()
        if status_of(st) in TERMINAL:
            return st
        if time.monotonic() > deadline:
            raise TimeoutError(f"still {status_of(st)}")
        time.sleep(0.5)


# ---------------------------------------------------------------- data set
def load_data(data_dir: Path) -> list[dict[str, Any]]:
    meta = json.loads((data_dir / "metadata.json").read_text("utf-8"))
    docs = []
    for name in sorted(meta):
        text = (data_dir / name).read_text("utf-8")
        docs.append({"file_name": name, "path": data_dir / name, "text": text, "doc_id": str(meta[name]["doc_id"]),
                     "topic": str(meta[name]["topic"])})
    if len(docs) < 4 or len({d["topic"] for d in docs}) < 2:
        raise SystemExit("the data dir needs >= 4 documents and >= 2 topics")
    return docs


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 5}


def distinctive_query(docs: list[dict[str, Any]], target: dict[str, Any], n: int = 6) -> str:
    """Words of ``target`` that occur in no other document (longest first): a query only it matches."""
    others: set[str] = set()
    for d in docs:
        if d is not target:
            others |= _words(d["text"])
    own = sorted(_words(target["text"]) - others, key=lambda w: (-len(w), w))
    if not own:
        raise SystemExit(f"document {target['doc_id']} has no distinctive words")
    return " ".join(own[:n])




def report(sdk: Any, **extra: Any) -> int:
    """Print the JSON report on the last stdout line; the exit code says whether every step passed."""
    print(json.dumps({"sdk": sdk, **extra, "steps": STEPS}))
    return 0 if all(s["ok"] for s in STEPS) else 1
