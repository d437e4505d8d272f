"""Names every layer shares, defined once: the retrieval modes, the columns that key a
benchmark row, the default metrics, and the order configurations are shown in.

No imports: datasets, client, runner, metrics, plots, report and the CLI all read
these without depending on one another.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The retrieval modes of the API, cheapest first (their natural display order).
MODES: tuple[str, ...] = ("fast", "accurate", "advanced")

#: Columns that identify one benchmark configuration. ``mode`` holds the configuration's
#: name: a mode (``"fast"``), a parameter set (``"alpha=0.5"``) or both (``"fast alpha=0.5"``).
CONFIG_KEY: tuple[str, ...] = ("pipeline_id", "mode", "top_k")

#: Columns that identify one retrieve request of a benchmark: a configuration and a query.
REQUEST_KEY: tuple[str, ...] = (*CONFIG_KEY, "query_id")

#: Relevance metrics computed when none are named.
DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "recall@20", "mrr", "map")


def natural_order(names: Iterable[str]) -> list[str]:
    """Distinct configuration names in display order: the modes present in their natural
    order (fast, accurate, advanced), then every other name in the order first seen."""
    seen = list(dict.fromkeys(names))
    return [m for m in MODES if m in seen] + [n for n in seen if n not in MODES]


#: The default grade scale of judging (grade -> label), as in TREC's graded judgements.
DEFAULT_GRADES: dict[int, str] = {0: "not relevant", 1: "relevant", 2: "highly relevant"}
