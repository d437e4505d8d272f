"""A self-hosted, LlamaCloud-compatible retrieval server (``pip install llamaeval[server]``).

Run it::

    llamaeval keys create --data-dir ./srv --name me     # prints the API key on the last line
    llamaeval serve --data-dir ./srv [--host 127.0.0.1] [--port 8000]
                    [--sources-root /data/docs] [--max-upload-mb 50] [--log-level info]
                    [--reranker mypkg.rerank:make] [--onnx-threads N] [--max-json-mb 10]
                    [--max-query-chars 4096] [--index-cache-mb 1024] [--shared-sources-root]

or from Python (a real subprocess on a free loopback port, with a fresh key)::

    with EmbeddedServer() as srv:            # srv.base_url, srv.api_key, srv.data_dir
        ...

Simplified API: the 18 operations of the LlamaCloud OpenAPI spec under ``/api/v1`` (projects,
files, pipelines, pipeline files / data sources / data sinks / jobs, sync, retrieve,
data sources), plus ``GET /files/{id}`` and ``GET /pipelines/{id}/jobs/{job_id}``.
``GET /health`` (no auth) answers ``{"status": "ok", "version", "max_top_k", ...}``;
interactive docs at ``/docs`` and ``/redoc`` (assets served locally when ``fastapi-offline``
is installed, so they work offline), the OpenAPI document at ``/openapi.json``.

Auth: ``Authorization: Bearer <key>``. Keys are stored as SHA-256 hashes; each key
belongs to an account (``keys create --account ID`` adds a key to an existing one)
and an account never sees another's objects (404).

Errors: ``{"detail": "<message>"}`` with 400 (bad input, also malformed JSON and wrong
types — never 422), 401, 404 (unknown ids and other accounts' objects) and 413
(upload larger than ``--max-upload-mb``, JSON body larger than ``--max-json-mb``,
query longer than ``--max-query-chars``); an unexpected error is a JSON 500, logged
once, and the connection stays usable.

Request boundary (both dialects, before any route): every JSON body must be UTF-8 (else the
byte position is named), well-formed (line and column named), without NaN/Infinity, at most
64 levels deep; every string in it (keys too), in the path and in query parameters must be
free of NUL characters and lone UTF-16 surrogates; every integer must fit 64 bits and every
number be finite. The field is named: 400 with one sentence on ``/api/v1``, 422 in FastAPI's
shape on ``/cloud``. Unknown request fields are accepted (the simplified contract allows them)
but never silently: the response carries ``Warning: 299 - "unknown field(s) ignored: topk"``
(retrieve requests of the real dialect too). Limits: uploads ``--max-upload-mb`` (streamed to
disk in 1 MB pieces, never held in memory), JSON bodies ``--max-json-mb`` (default 10),
retrieve bodies 6 bytes per query character + 64 KB, queries ``--max-query-chars``
(default 4096); queries of 512 characters or more run one at a time in a paced lane of their
own, so clients sending maximal queries cannot take the CPU from everybody else.

Files: ``.txt .text .md .markdown .html .htm .pdf (text layer) .json .jsonl .csv .tsv
.xml`` (``llamaeval.engine.SUPPORTED_EXTENSIONS``). Uploads must be non-empty, have a
plain file name (no directories or ``..``) and a supported extension. A file that
cannot be parsed at sync time ends with ``status: "error"`` and its reason in ``error``;
the other files complete (adding it again, or changing it in its data source, retries it).

Sync: ``POST /pipelines/{id}/sync`` queues a job (one worker thread runs jobs in
order). It scans the pipeline's data sources, then parses, chunks (token-aware with
overlap; ``chunking_config`` per pipeline) and embeds (MiniLM int8 ONNX) each new or
changed file once, keeping its chunks and vectors on disk, and builds a new complete
BM25 + dense index in a temporary directory that replaces the current one atomically:
retrieval reads only the last completed index, also while a sync runs or after one
failed or was killed. A job and its pipeline's status change in one storage transaction. A
sync stopped by a cancel or by the server's stop (or found interrupted at the next start)
leaves the pipeline ``active`` while it serves its previous index (``idle`` without one), with
what happened in ``error``; a sync that fails on the content makes it ``error``.
``sync_interval`` (seconds) schedules syncs. Syncing a pipeline without files or data sources
is a 400; retrieving before the first sync is a 400. Searches run at most one per core at once
(the others wait their turn, first come first served) and one fewer while a sync job runs, so
ingestion keeps a core under any query load.

Embedding in a sync: every changed file is parsed and cut first (the job's ``num_chunks_total``);
then their chunks, up to 8,192 at a time, are sorted by token length and embedded in calls of at
most 1,024 padded tokens (under 1% padding), a file completing as soon as its last chunk has a
vector; the job's ``num_chunks_done`` follows call by call (cancels take effect between calls).
Vectors are kept by content in ``<data_dir>/embedding-cache.sqlite``, per account (key: account,
model name and the hash of its files, passage truncation, exact chunk text): a chunk the account
has embedded before is not embedded again (``num_chunks_cached``), whichever pipeline or chunking
config it came from; another account's vectors are never found. ``LLAMAEVAL_EMBED_CACHE_MB``
(default 1024; 0 turns the cache off) bounds it, least recently used dropped first; each sync logs
the cache's size and hits.

Data sources: ``source_type: "directory"`` with ``config: {"path": "<folder>",
"recursive": true}``, the folder relative to (and resolved inside) the account's own folder
``<--sources-root>/<account_id>/`` (the operator creates it; ``keys create`` prints the
account id); other paths, other accounts' folders included, are refused (400).
``LLAMAEVAL_SHARED_SOURCES_ROOT=1`` gives every account the whole root instead (single-tenant
servers only: any account can then read any folder under it). Hidden files, files of other types
and files above the upload limit are skipped. Any other ``source_type`` is a 400 naming
the supported ones. ``PUT /pipelines/{id}/data-sources`` accepts data source
definitions (created and attached) or ``{"data_source_id": ...}`` references.
The data sink is the embedded index (``sink_type: "embedded"``; config: location relative to
the data dir — never a server path —, num_chunks, embedding_model, dimensions).

Embedding models (``engine.EMBEDDING_MODELS``, listed by ``/health``): a pipeline embeds its chunks
and queries with ``embedding_config: {"model_name": ...}`` of its creation (simplified dialect; real
dialect: create, upsert or update, above) — ``all-MiniLM-L6-v2-onnx-int8`` (default, 384 dimensions)
or ``wordllama-l2-supercat-256`` (static, 256 dimensions, ~100x faster ingestion on a core, lower
relevance; the ``fast-embed`` extra, else the request is a 400/422 naming it). Chunking uses MiniLM's
word pieces for every model, so two pipelines differing only in model hold the same chunks. An index
records its model; its queries are embedded by that model (also while a pipeline that changed model is
still served by its previous index, until the next sync re-embeds). The embedding cache keys vectors
by model name and version. On PostgreSQL the 256-dimension vectors are stored zero-padded in the
``vector(384)`` column (same norms, inner products and rankings).

Retrieve: ``{"query", "mode": "fast|accurate|advanced", "top_k": 1..engine.MAX_TOP_K}``;
each result's ``metadata`` holds the file's custom metadata plus ``file_id, file_name,
pipeline_id, chunk_id, chunk_index, start_char, end_char, scores`` (stage -> score)
and ``title`` when the document has one (custom keys may not use the reserved names);
the ``Server-Timing`` header gives per-stage durations in milliseconds. ``--reranker
MODULE:FACTORY`` plugs a second stage (``FACTORY()`` returns an ``llamaeval.engine.Reranker``,
e.g. a local cross-encoder) into every index. BLAS runs single-threaded in the server
process (set at startup), next to onnxruntime.

Real LlamaCloud dialect: the same server also speaks the API of the official SDKs
(``llama-cloud`` 2.x/1.x Stainless, 0.1.x Fern) and of LlamaIndex's ``LlamaCloudIndex``,
with base URL ``http://HOST:PORT/cloud`` (so ``/cloud/api/v1/...``; OpenAPI at
``/cloud/openapi.json``, docs at ``/cloud/docs``), over the same projects, files and
pipelines. Each account has a ``Default`` project. Routes: projects; ``POST /files``
(multipart ``upload_file``) and ``POST /beta/files`` (``file`` + ``purpose``), get/delete;
pipelines create / upsert (``PUT /pipelines``, by project and name) / get / update / delete
with ``project_id`` as a query parameter, ``transform_config`` chunk size and overlap
(MiniLM word pieces), ``preset_retrieval_parameters``, ``pipeline_type``; adding files
(``custom_metadata``) or documents starts ingestion; ``files`` / ``files2`` pages, per-file
and pipeline ``/status`` (``NOT_STARTED|IN_PROGRESS|SUCCESS|ERROR|PARTIAL_SUCCESS|CANCELLED``
with error steps), status counts, metadata updates; documents (``POST|PUT``, paginated list,
get, status, chunks, delete); ``sync`` and ``sync/cancel`` return the pipeline;
data sources (``directory`` only: others are a 422 naming it) and data sinks as top-level
resources (a sink is recorded; the index stays on this server's disk); ``GET /jobs``.
Retrieve takes the real knobs (``llamaeval.server._llamacloud._retrieve`` documents how each
maps onto one engine ``SearchRequest``) and answers ``retrieval_nodes`` with the chunk in
``node.text``, its metadata in ``node.extra_info``, ``retrieval_latency`` per stage.
Validation errors there are 422 in FastAPI's shape. ``embedding_config`` ``{"type":
"HUGGINGFACE_API_EMBEDDING", "component": {"model_name": ...}}`` chooses one of the server's models
(below; another name is a 422 naming them); a hosted provider's config (OpenAI, Cohere, ...) is
recorded and embedded with MiniLM. The v2 index API (``/indexes``,
``/retrieval/retrieve``) is not served.

Settings: each ``serve`` flag wins over its environment variable, which wins over the default
(a bad value is refused in one line naming the flag or variable): ``LLAMAEVAL_DATA_DIR`` (default ``./.llamaeval``),
``LLAMAEVAL_SOURCES_ROOT``, ``LLAMAEVAL_MAX_UPLOAD_MB`` (default 50), ``LLAMAEVAL_RERANKER``,
``LLAMAEVAL_ONNX_THREADS`` (embedder threads; default onnxruntime's), ``LLAMAEVAL_MAX_JSON_MB``
(10), ``LLAMAEVAL_MAX_QUERY_CHARS`` (4096), ``LLAMAEVAL_INDEX_CACHE_MB`` (1024: loaded indexes
beyond it are unloaded, least recently used first), ``LLAMAEVAL_SHARED_SOURCES_ROOT`` (0),
``LLAMAEVAL_EMBED_CACHE_MB`` (1024; 0: no embedding cache),
``LLAMAEVAL_DATABASE`` / ``--database``: ``sqlite:///PATH`` or ``postgresql://USER:PW@HOST:PORT/DB``
(the ``postgres`` extra; schema created and migrated at start; uploaded file bytes in the
database too; ``serve --workers N`` for N API processes; see ``docs/scale-out.md``).
Data dir layout:
``llamaeval.db`` (SQLite metadata behind the :class:`Storage` protocol, so another
database can replace it), ``files/`` (SQLite servers), ``pipelines/<id>/chunks/``, ``pipelines/<id>/indexes/``,
``embedding-cache.sqlite``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llamaeval.server._config import ServerConfig
from llamaeval.server._embedded import EmbeddedServer, ServerStartError
from llamaeval.server._keys import create_api_key, create_api_key_in
from llamaeval.server._sqlite import SQLiteStorage
from llamaeval.server._storage import Storage

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["EmbeddedServer", "ServerStartError", "ServerConfig", "Storage", "SQLiteStorage",
           "create_app", "create_api_key", "create_api_key_in"]


def create_app(config: ServerConfig, storage: Storage | None = None, embedder: Any = None) -> "FastAPI":
    """The FastAPI app serving ``config`` (imports FastAPI only when called)."""
    from llamaeval.server._app import create_app as _create

    return _create(config, storage=storage, embedder=embedder)

