"""Second-stage model files: references by name/version/SHA-256, the shipped versions, model stores.

A pipeline's ``RetrievalConfig.ltr_model`` names its learned second stage by reference,
``{"name": "llamaeval-ltr", "version": 2, "sha256": "<64 hex>"}`` — a few hundred bytes
instead of the weights (tens of KB). The weights live in a *model document*
``{"name", "version", "description", "models": {"accurate": {...}, "advanced": {...}},
"stages": {...}, "tuning": {...}}`` (see ``LearnedRanker`` for one model's keys,
``stages`` for the stage parameters trained with the models), found by:

1. the package: ``llamaeval/engine/data/ltr-v<version>.json``, one file per shipped version
   (the default plus every older version kept, so a pipeline that names one keeps ranking with it);
2. a model store: a directory of ``<sha256>.json`` files (the server keeps user-supplied models
   in ``<data_dir>/models``; an index directory keeps the one it ranks with in ``models/``).

``sha256`` is the SHA-256 of the document file's bytes; a store writes documents in canonical
JSON (sorted keys, no spaces), so the hash of inline weights does not depend on their formatting.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["MODEL_NAME", "DEFAULT_MODEL_VERSION", "ModelStore", "default_model_reference", "packaged_versions",
           "read_packaged", "is_reference", "check_reference", "canonical_bytes", "reference_of", "resolve_model"]

#: Name of the shipped learned second stage.
MODEL_NAME = "llamaeval-ltr"
#: Version a new pipeline ranks with (``llamaeval/engine/data/ltr-v<version>.json``).
DEFAULT_MODEL_VERSION = 2
_REF_KEYS = frozenset({"name", "version", "sha256"})
_SHA = re.compile(r"^[0-9a-f]{64}$")
_FILE = re.compile(r"^ltr-v(\d+)\.json$")


def _data_file(version: int) -> Any:
    return resources.files("llamaeval.engine").joinpath("data", f"ltr-v{version}.json")


def packaged_versions() -> list[int]:
    """Versions of ``MODEL_NAME`` shipped in this package, oldest first."""
    folder = resources.files("llamaeval.engine").joinpath("data")
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _FILE.match(p.name)))


def read_packaged(version: int) -> bytes:
    """The bytes of the shipped model document of ``version`` (FileNotFoundError if not shipped)."""
    return _data_file(version).read_bytes()


def default_model_reference() -> dict[str, Any]:
    """The reference of the shipped default model (hash computed from the file, on call)."""
    data = read_packaged(DEFAULT_MODEL_VERSION)
    return {"name": MODEL_NAME, "version": DEFAULT_MODEL_VERSION, "sha256": hashlib.sha256(data).hexdigest()}


def is_reference(value: Any) -> bool:
    """Whether ``value`` is a model reference (keys name, version, sha256 only) rather than inline weights."""
    return isinstance(value, dict) and set(value) == _REF_KEYS


def check_reference(ref: Any, where: str = "retrieval_config.ltr_model") -> None:
    """ValueError naming the problem unless ``ref`` is a well-formed reference."""
    if not is_reference(ref):
        raise ValueError(f"{where} must be a model reference {{\"name\", \"version\", \"sha256\"}} or inline "
                         f"weights {{\"models\": {{...}}}}; got keys {sorted(ref) if isinstance(ref, dict) else ref!r}")
    if not isinstance(ref["name"], str) or not ref["name"].strip() or len(ref["name"]) > 200:
        raise ValueError(f"{where}.name must be a non-empty string, got {ref['name']!r}")
    version = ref["version"]
    too_long = isinstance(version, str) and len(version) > 100
    if isinstance(version, bool) or not isinstance(version, (int, str)) or too_long:
        raise ValueError(f"{where}.version must be an integer or a short string, got {version!r}")
    if not isinstance(ref["sha256"], str) or not _SHA.match(ref["sha256"]):
        raise ValueError(f"{where}.sha256 must be 64 lowercase hex digits, got {ref['sha256']!r}")


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """A model document as canonical JSON (sorted keys, no spaces, strict floats): what a store writes."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def reference_of(document: dict[str, Any]) -> dict[str, Any]:
    """The reference of inline weights as a store keeps them: their ``name``/``version`` if given
    (else ``"custom"`` and the hash's first 12 digits) and the SHA-256 of the canonical JSON."""
    sha = hashlib.sha256(canonical_bytes(document)).hexdigest()
    name = document.get("name") if isinstance(document.get("name"), str) and document["name"].strip() else "custom"
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, (int, str)) or version == "":
        version = sha[:12]
    return {"name": name, "version": version, "sha256": sha}


def _parse(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise ValueError(f"{what} is not a model document (no 'models' mapping)")
    return doc


class ModelStore:
    """A directory of model documents named by their SHA-256 (``<sha256>.json``)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return self.directory / f"{sha256}.json"

    def put(self, document: dict[str, Any]) -> dict[str, Any]:
        """Store ``document`` (canonical JSON, atomically; a no-op when already stored); its reference."""
        ref = reference_of(document)
        path = self.path(ref["sha256"])
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(canonical_bytes(document))
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return ref

    def get(self, sha256: str) -> dict[str, Any] | None:
        """The document stored under ``sha256`` (its bytes checked against the hash), or None."""
        try:
            data = self.path(sha256).read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError(f"model store file {self.path(sha256)} does not match its SHA-256 (corrupted)")
        return _parse(data, f"model store file {self.path(sha256)}")

    def __contains__(self, sha256: object) -> bool:
        return isinstance(sha256, str) and bool(_SHA.match(sha256)) and self.path(sha256).is_file()

    def __repr__(self) -> str:
        return f"ModelStore({str(self.directory)!r})"


def packaged_document(ref: dict[str, Any]) -> dict[str, Any] | None:
    """The shipped document ``ref`` names, or None when ``ref`` is not a shipped model;
    ValueError when it names a shipped version whose file has another hash."""
    if ref["name"] != MODEL_NAME or not isinstance(ref["version"], int) or ref["version"] not in packaged_versions():
        return None
    data = read_packaged(ref["version"])
    sha = hashlib.sha256(data).hexdigest()
    if sha != ref["sha256"]:
        raise ValueError(f"retrieval_config.ltr_model: {MODEL_NAME} version {ref['version']} shipped with this "
                         f"llamaeval has SHA-256 {sha[:12]}…, the config names {ref['sha256'][:12]}…")
    return _parse(data, f"{MODEL_NAME} version {ref['version']}")


def resolve_model(ref: dict[str, Any], stores: tuple[ModelStore, ...] = ()) -> dict[str, Any]:
    """The model document ``ref`` names: from the package, else from the first store holding it.
    ValueError saying where it was looked for when none does."""
    doc = packaged_document(ref)
    if doc is not None:
        return doc
    for store in stores:
        doc = store.get(ref["sha256"])
        if doc is not None:
            return doc
    shipped = ", ".join(f"v{v}" for v in packaged_versions())
    where = "; ".join(str(s.directory) for s in stores) or "no model store given"
    raise ValueError(f"retrieval_config.ltr_model names {ref['name']} version {ref['version']} "
                     f"(SHA-256 {ref['sha256'][:12]}…), which is neither shipped with this llamaeval "
                     f"({MODEL_NAME} {shipped}) nor in a model store ({where}); send the weights inline "
                     f"({{\"models\": {{...}}}}) or name a shipped version")
