"""Clients for the LlamaCloud REST API: sync and async, DataFrames out, resilient.

Quick start::

    import llamaeval as le

    with le.LlamaCloud() as lc:                 # LLAMA_CLOUD_API_KEY / LLAMA_CLOUD_BASE_URL
        project = lc.projects.create("demo")
        pipe = lc.pipelines.create("docs", project.id)
        lc.files.upload_folder("my_docs/", project.id, pipe.id)   # upload + add, batched
        lc.pipelines.sync(pipe.id)
        lc.pipelines.wait_for_sync(pipe.id)      # tqdm bar; SyncError if the job fails
        res = lc.pipelines.retrieve(pipe.id, "what is BM25?", mode="accurate", top_k=5)
        res.frame                                # rank, score, text, file_id, ..., doc_id
        res.latency_s, res.server_timing         # seconds (client wall / Server-Timing)

    async with le.AsyncLlamaCloud() as alc:     # same namespaces, every method awaitable
        res = await alc.pipelines.retrieve(pipe.id, "what is BM25?")

Configuration
-------------
``LlamaCloud(api_key=None, base_url=None, region="us", timeout=60.0, max_retries=2,
transport=None, http_client=None, *, retry=None, dialect="auto")``. Each setting comes from the
argument, else the environment (``LLAMA_CLOUD_API_KEY``, ``LLAMA_CLOUD_BASE_URL``),
else the region default:

* ``region="us"`` -> ``https://api.cloud.llamaindex.ai``
* ``region="eu"`` -> ``https://api.cloud.eu.llamaindex.ai`` — the EU host LlamaCloud
  documents. (The OpenAPI file's ``servers`` list says ``api.cloud.llamaindex.eu``;
  we follow the documentation. Pass ``base_url=`` to use another host.)

``dialect``: ``"auto"`` (default: LlamaCloud's hosts speak the real API, any other server is
asked once with ``GET /projects`` — real projects carry ``organization_id``), ``"llamacloud"``
(the official SDKs' API: LlamaCloud, or the local server under ``/cloud``) or ``"simplified"``
(the spec's API: the local server's root). Every operation works in both and returns the same
records and frames; see ``llamaeval.client._llamacloud`` for the real wire mapping
(``MODE_PRESETS``, ``RETRIEVE_PARAMS``, ``metadata_filters``). Real-only:
``pipelines.documents``, ``pipelines.update`` (name, ``preset_retrieval_parameters``); both:
``pipelines.status`` and ``pipelines.check_ready`` (pre-flight).

``base_url`` is the server root *without* ``/api/v1`` (e.g. the local server's
``http://127.0.0.1:8000``); the client appends ``/api/v1`` and also accepts a URL
that already ends with it. ``timeout`` is seconds (or an ``httpx.Timeout``).
``transport`` plugs in any ``httpx`` transport (``httpx.MockTransport`` for tests);
``http_client`` lets you pass your own ``httpx.Client`` / ``httpx.AsyncClient``
(proxies, certificates, limits) which the client then does not close.

Operations (all 18 of the spec, by operationId)
-----------------------------------------------
* ``projects.list()`` listProjects · ``projects.create(name)`` createProject ·
  ``projects.get(id)`` getProject
* ``files.upload(path_or_bytes, project_id, name=None)`` uploadFile
* ``pipelines.list(project_id)`` listPipelines · ``pipelines.create(name, project_id,
  sync_interval=None, retrieval_config=None, chunking_config=None)`` createPipeline ·
  ``pipelines.get(id)`` getPipeline · ``pipelines.delete(id)`` deletePipeline ·
  ``pipelines.sync(id)`` syncPipeline
* ``pipelines.retrieve(id, query, mode="fast", top_k=10, **extra_body)`` runSearch
* ``pipelines.files.list(id)`` listPipelineFiles · ``pipelines.files.add(id, files)``
  addFilesToPipeline (file ids, ``{"file_id", "metadata"}`` dicts or a frame)
* ``pipelines.data_sources.list(id)`` listPipelineDataSources ·
  ``pipelines.data_sources.add(id, sources)`` addDataSourcesToPipeline (new sources as
  dicts, existing ones by id or record)
* ``pipelines.data_sinks.list(id)`` listPipelineDataSinks ·
  ``pipelines.jobs.list(id)`` listPipelineJobs
* ``data_sources.list(project_id)`` listDataSources ·
  ``data_sources.create(name, source_type, config=None, project_id=None)`` createDataSource

Ids may be given as strings or as the records returned (``Project``, ``Pipeline`` ...).

Helpers: ``files.upload_documents(df, project_id, pipeline_id=None, id_column="doc_id",
text_column="text", title_column="title", metadata_columns=(), batch_size=50)`` uploads
one ``<doc_id>.txt`` per row and, with a pipeline, adds each batch with metadata
``{"doc_id": ...}``; ``files.upload_folder(folder, project_id, pipeline_id=None,
pattern="**/*", metadata=None)`` does the same for files on disk (metadata
``{"file_path": <relative path>, ...}``). Both return a frame of file ids; the async
client uploads up to 4 files of a batch concurrently. ``pipelines.wait_for_sync(id,
timeout=600.0, poll_interval=0.5, progress=True, job_id=None)`` polls the newest job,
shows a tqdm bar of processed files and raises ``SyncError`` with the job's error when
it fails or the timeout (seconds) passes. ``health()`` reads the server's ``/health``;
``LlamaCloud.to_async()`` builds the async twin with the same settings.

What comes back
---------------
Lists are DataFrames with typed columns: datetimes are timezone-aware UTC, ``status``
is categorical (the spec's values as categories), counts are nullable ``Int64``, ids and
names ``string``; a pipeline file's custom ``metadata`` becomes ``metadata.<key>``
columns; fields the server adds beyond the spec become extra columns. Single objects
are dataclass records (:class:`Project`, :class:`File`, :class:`Pipeline`,
:class:`PipelineFile`, :class:`PipelineJob`, :class:`DataSource`, :class:`DataSink`)
with typed attributes, ``.extra`` (unknown fields) and ``.to_frame()`` (one row, same
dtypes as the list frames).

``retrieve`` returns a :class:`RetrievalResult`: ``.frame`` (built on first access)
with ``rank`` (1-based), ``score``, ``text``, ``file_id``, ``file_name``, ``chunk_id``,
``chunk_index``, ``doc_id`` (from metadata; NA when absent), then the other metadata
keys flattened (a nested ``scores`` dict becomes ``scores.<stage>``); ``.latency_s``
(client wall time in seconds on the monotonic clock, retries included; ``.attempts``
says how many were made); ``.server_timing`` (the ``Server-Timing`` header, converted
from milliseconds to seconds); ``.request`` (the parameters sent); ``.raw`` and
``.status_code``. Arguments are checked first: an unknown mode, ``top_k < 1``, an empty
query or a bad id raises :class:`~llamaeval.ConfigurationError` and nothing is sent.

Errors and retries
------------------
HTTP errors raise the :mod:`llamaeval._errors` classes with ``status_code``,
``message`` (the server's ``detail``), ``request`` and ``body``: 400/413/422
``BadRequestError``, 401/403 ``AuthenticationError``, 404 ``NotFoundError``, 429
``RateLimitError``, 5xx ``ServerError``; an unreachable server ``APIConnectionError``,
a timeout ``APITimeoutError``; a body that is not valid JSON ``APIError`` (not retried).

Up to ``max_retries`` retries, waiting ``Retry-After`` when sent (seconds or an HTTP
date; more than ``RetryPolicy.max_retry_after`` = 60 s is not waited for) else
``min(8, 0.5 * 2**attempt)`` seconds scaled by a random factor in [0.5, 1]:

* reads and idempotent writes (GET, PUT, DELETE, ``retrieve``): on 408, 429, 5xx
  (except 501), connection errors and timeouts;
* creates (``projects.create``, ``pipelines.create``, ``data_sources.create``,
  ``files.upload``) and ``pipelines.sync``: only when the server cannot have acted —
  the connection was never made (connect error/timeout), 408, 429, or 503 *with*
  ``Retry-After``. A 500/502/504, a read timeout or a dropped connection raises at
  once, so a create is never silently repeated; check with ``list()`` before retrying.

``RetryPolicy(backoff_base=0.5, backoff_max=8.0, max_retry_after=60.0, jitter=True,
sleep=time.sleep, async_sleep=asyncio.sleep, rng=random.Random())`` changes the waits;
tests pass a recording ``sleep`` so nothing waits.
"""

from llamaeval.client._client import AsyncLlamaCloud, LlamaCloud
from llamaeval.client._config import DIALECTS, REGIONS, ClientConfig
from llamaeval.client._llamacloud import MODE_PRESETS, RETRIEVE_PARAMS, metadata_filters
from llamaeval.client._records import DataSink, DataSource, File, Pipeline, PipelineFile, PipelineJob, Project
from llamaeval.client._retrieval import MODES, RetrievalResult, parse_server_timing
from llamaeval.client._retry import RetryPolicy, parse_retry_after

__all__ = [
    "LlamaCloud",
    "AsyncLlamaCloud",
    "RetryPolicy",
    "ClientConfig",
    "REGIONS",
    "DIALECTS",
    "MODES",
    "MODE_PRESETS",
    "RETRIEVE_PARAMS",
    "metadata_filters",
    "RetrievalResult",
    "Project",
    "File",
    "Pipeline",
    "PipelineFile",
    "PipelineJob",
    "DataSource",
    "DataSink",
    "parse_server_timing",
    "parse_retry_after",
]
