"""The real LlamaCloud dialect (v1 pipelines), served under ``REAL_MOUNT`` so the official
SDKs and LlamaIndex's ``LlamaCloudIndex`` run against the local server unchanged."""

from __future__ import annotations

from fastapi import FastAPI

__all__ = ["create_subapp"]


def create_subapp(version: str) -> FastAPI:
    """The real dialect as an app to mount (its own OpenAPI at ``<mount>/openapi.json``,
    validation errors as FastAPI's 422)."""
    from llamaeval.server._llamacloud import _routes

    app = FastAPI(title="llamaeval local LlamaCloud server (real LlamaCloud dialect)", version=version,
                  docs_url=None, redoc_url=None,
                  description="The LlamaCloud v1 API as the official SDKs speak it: projects, files, pipelines, "
                              "pipeline files and documents, ingestion status, sync, retrieval with the real "
                              "parameters, data sources and sinks, jobs. Bearer API keys as on the simplified API.")
    app.include_router(_routes.router())
    return app
