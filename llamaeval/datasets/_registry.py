"""The bundled collections and ``load_queryset``: one entry point for names and paths."""

from __future__ import annotations

from pathlib import Path

from llamaeval._errors import QuerySetError
from llamaeval.datasets._formats import PathLike, load_folder
from llamaeval.datasets._queryset import OnError, QuerySet

#: Collections shipped inside the package (``llamaeval/datasets/_bundled/<name>/``, BEIR layout, gzip).
BUNDLED: tuple[str, ...] = ("adi", "med", "cranfield", "cisi", "scifact")
_ALIASES = {"cran": "cranfield", "medline": "med"}


def bundled_root() -> Path:
    """The folder holding the bundled collections (inside the installed package)."""
    return Path(__file__).resolve().parent / "_bundled"


def bundled_path(name: str) -> Path:
    """The BEIR folder of bundled collection ``name`` (``"adi"``, ``"cranfield"``, ...)."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in BUNDLED:
        raise QuerySetError(f"no bundled query set named {name!r}; bundled: {', '.join(BUNDLED)}")
    path = bundled_root() / key
    if not path.is_dir():
        raise QuerySetError(f"bundled query set {key!r} is missing from the installation ({path}); "
                            "reinstall llamaeval")
    return path


def load_queryset(name_or_path: str | PathLike | QuerySet, split: str = "test", *,
                  on_error: OnError = "raise") -> QuerySet:
    """Load a bundled collection by name, or a folder in BEIR / CSV / JSONL / TREC layout.

    Bundled: ``adi``, ``med``, ``cranfield``, ``cisi``, ``scifact`` (``split="train"`` too).
    A path wins over a bundled name when both exist. ``split`` picks the judgements;
    all queries are kept and :meth:`QuerySet.judged_queries` are the ones scored.
    A QuerySet passes through unchanged.
    """
    if isinstance(name_or_path, QuerySet):
        return name_or_path
    path = Path(name_or_path)
    if path.is_dir():
        return load_folder(path, split, on_error=on_error)
    if isinstance(name_or_path, str) and _ALIASES.get(name_or_path.lower(), name_or_path.lower()) in BUNDLED:
        root = bundled_path(name_or_path)
        return load_folder(root, split, name=root.name, on_error=on_error)
    if path.exists():
        raise QuerySetError(f"{path} is a file; pass the folder holding the query set, or use load_beir / "
                            "load_trec / load_csv / load_jsonl for single files")
    raise QuerySetError(f"{name_or_path!r} is neither a folder nor a bundled query set "
                        f"(bundled: {', '.join(BUNDLED)})")
