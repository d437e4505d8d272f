"""The FastAPI application: both dialects' routers over one set of services, auth, errors, docs."""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llamaeval.server import _schemas as S
from llamaeval.server import _simplified
from llamaeval.server._auth import Gatekeeper
from llamaeval.server._boundary import CatchAll, validation_message
from llamaeval.server._retrieve_lane import LaneRoute, RetrieveLane
from llamaeval.server._config import DataLayout, ServerConfig
from llamaeval.server._services import InvalidInput, NotFound, ServiceError, Services, TooLarge, store_inline_models
from llamaeval.server._storage import Storage
from llamaeval.server._sync import SUPPORTED_SOURCE_TYPES

__all__ = ["create_app", "REAL_MOUNT"]

log = logging.getLogger("llamaeval.server")

#: Where the real LlamaCloud dialect is served: SDK base URL ``http://host:port/cloud``.
REAL_MOUNT = "/cloud"
_SERVICE_STATUS: dict[type[ServiceError], int] = {InvalidInput: 400, NotFound: 404, TooLarge: 413}


# -- error handlers ------------------------------------------------------------------------
async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": validation_message(list(exc.errors()))}, status_code=400)


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def on_service_error(request: Request, exc: ServiceError) -> JSONResponse:
    """A rule the services refused: its status (400/404/413) and its message, in either dialect."""
    return JSONResponse({"detail": exc.message}, status_code=_SERVICE_STATUS.get(type(exc), 400))


def _offline_docs_assets() -> Any:
    """Swagger UI / ReDoc files shipped by the ``fastapi-offline`` package, so /docs works
    without internet; None when it is not installed (then FastAPI's CDN-based pages are used)."""
    try:
        import importlib.resources

        folder = importlib.resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        return None
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _mount_offline_docs(app: FastAPI, folder: Any, root: str) -> None:
    """/docs and /redoc of ``app`` from the offline assets; ``root``: where ``app`` is mounted."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/docs-static", StaticFiles(directory=str(folder)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title=f"{app.title} - docs",
                                   swagger_js_url=f"{root}/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}/docs-static/swagger-ui.css",
                                   swagger_favicon_url=f"{root}/docs-static/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=f"{root}/openapi.json", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}/docs-static/redoc.standalone.js",
                              redoc_favicon_url=f"{root}/docs-static/favicon.png")


def create_app(config: ServerConfig, storage: Storage | None = None, embedder: Any = None) -> FastAPI:
    """The ASGI app for ``config``: the simplified dialect under ``/api/v1`` and the real
    LlamaCloud dialect under ``REAL_MOUNT`` + ``/api/v1``, over one set of services.

    Nothing starts until the app's lifespan starts: then the storage is opened (``config.database``:
    SQLite under ``config.data_dir`` by default, or PostgreSQL; unless ``storage`` is given), BLAS is
    limited to one thread, the embedder is created and the sync worker starts."""
    from llamaeval import __version__
    from llamaeval.server import _llamacloud
    from llamaeval.server._llamacloud import _routes as _real_routes
    from llamaeval.server._llamacloud import _schemas as _real_schemas

    real = _llamacloud.create_subapp(__version__)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from threadpoolctl import threadpool_limits

        from llamaeval import engine
        from llamaeval.server._database import open_storage
        from llamaeval.server._file_store import file_store
        from llamaeval.server._queue import sync_service_for
        from llamaeval.server._shared_index import index_cache_for

        # numpy's BLAS workers spin against onnxruntime on few cores: one thread each
        app.state.blas_limits = threadpool_limits(limits=1)
        layout = DataLayout(config.data_dir)
        layout.create()
        if layout.remove_partial_writes():  # a killed server's cut-short writes: garbage, never objects
            log.info("removed the partial writes a previous run left in %s", config.data_dir)
        store = storage if storage is not None else open_storage(config.database, config.data_dir)
        # the default embedder, plus one per other model a pipeline names (created on first use)
        emb = engine.Embedders(embedder, num_threads=config.onnx_threads)
        indexes = index_cache_for(store, layout, emb, config.load_reranker(), config.index_cache_bytes)
        sync = sync_service_for(store, layout, config, emb, indexes, work=config.ingest)
        services = Services(config=config, storage=store, layout=layout, embedder=emb, indexes=indexes, sync=sync)
        store_inline_models(store, layout)  # pipelines of earlier releases: model weights -> reference
        if copied := file_store(store, layout).import_disk_files():  # stored on disk before migration 005
            log.info("copied %d files of %s into the database", copied, layout.files_dir)
        app.state.llamaeval = real.state.llamaeval = services
        sync.start()
        log.info("llamaeval server ready: data dir %s", config.data_dir)
        try:
            yield
        finally:
            sync.stop()
            if storage is None:
                store.close()
            app.state.blas_limits.restore_original_limits()

    static_docs = _offline_docs_assets()
    app = FastAPI(title="llamaeval local LlamaCloud server", version=__version__, lifespan=lifespan,
                  docs_url=None if static_docs else "/docs", redoc_url=None if static_docs else "/redoc",
                  description="A self-hosted implementation of the LlamaCloud retrieval API "
                              "(projects, files, pipelines, sync jobs, data sources, retrieval). "
                              "Authenticate with `Authorization: Bearer <key>` "
                              "(create keys with `llamaeval keys create --data-dir DIR`). "
                              f"The real LlamaCloud dialect (official SDKs, LlamaCloudIndex) is served "
                              f"with base URL `{REAL_MOUNT}`: docs at `{REAL_MOUNT}/docs`.")
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(ServiceError, on_service_error)
    app.add_middleware(RetrieveLane, routes=(  # inside the Gatekeeper: after its checks
        LaneRoute(_simplified.API_PREFIX + _simplified.RETRIEVE_PATH, S.RetrievalRequest, _simplified.search_answer,
                  app.exception_handlers),
        LaneRoute(REAL_MOUNT + _simplified.API_PREFIX + _real_routes.RETRIEVE_PATH, _real_schemas.RetrieveRequest,
                  _real_routes.retrieve_answer, real.exception_handlers)))
    app.add_middleware(Gatekeeper, max_upload_bytes=config.max_upload_bytes, max_json_bytes=config.max_json_bytes,
                       protected=(_simplified.API_PREFIX, REAL_MOUNT + _simplified.API_PREFIX),
                       real_prefix=REAL_MOUNT, max_query_chars=config.max_query_chars)
    app.add_middleware(CatchAll)  # outermost: nothing raised below it reaches uvicorn

    @app.get("/health", tags=["Health"], response_model=S.HealthOut, summary="Liveness (no auth)", operation_id="health")
    def health() -> Any:
        from llamaeval import engine

        return {"status": "ok", "version": __version__, "max_top_k": engine.MAX_TOP_K,
                "supported_extensions": sorted(engine.SUPPORTED_EXTENSIONS),
                "supported_source_types": list(SUPPORTED_SOURCE_TYPES),
                "embedding_models": list(engine.EMBEDDING_MODELS)}

    app.include_router(_simplified.router())
    if static_docs:
        _mount_offline_docs(app, static_docs, "")
        _mount_offline_docs(real, static_docs, REAL_MOUNT)
    real.add_exception_handler(ServiceError, on_service_error)
    real.add_exception_handler(StarletteHTTPException, _on_http_error)
    real.add_middleware(CatchAll)
    app.mount(REAL_MOUNT, real)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        routes = [r for r in app.routes if getattr(r, "path", None) != REAL_MOUNT]
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=routes,
                             servers=[{"url": "/", "description": "this server (API under /api/v1)"}])
        for path in schema.get("paths", {}).values():  # validation errors are 400 here, never 422
            for op in path.values():
                op.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
