"""Request bodies of the real LlamaCloud dialect (field names, ranges and enums of the official
SDKs' types). Unknown fields are ignored: the SDKs send more than the local server uses."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RetrievalMode = Literal["chunks", "files_via_metadata", "files_via_content", "auto_routed"]
PipelineType = Literal["PLAYGROUND", "MANAGED"]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RetrievalParams(_In):
    """The knobs of a retrieve; a pipeline's ``preset_retrieval_parameters`` has the same fields."""

    dense_similarity_top_k: int | None = Field(None, ge=1, le=100, description="Dense (MiniLM cosine) candidates.")
    sparse_similarity_top_k: int | None = Field(None, ge=1, le=100, description="Sparse (BM25) candidates.")
    alpha: float | None = Field(None, ge=0, le=1, description="Hybrid weight: 0 = sparse only, 1 = dense only.")
    dense_similarity_cutoff: float | None = Field(None, ge=0, le=1,
                                                  description="Minimum cosine similarity of any returned node.")
    enable_reranking: bool | None = Field(None, description="Run the second stage (learned ranker, plug-in "
                                                            "cross-encoder if configured).")
    rerank_top_n: int | None = Field(None, ge=1, le=100, description="Nodes kept after reranking.")
    retrieval_mode: RetrievalMode | None = Field(None, description="chunks, whole files by content or metadata, "
                                                                   "or auto_routed.")
    files_top_k: int | None = Field(None, ge=1, le=5, description="Files returned by the files_via_* modes.")
    search_filters: dict[str, Any] | None = Field(None, description="Metadata filters (MetadataFilters) on "
                                                                    "the fields of a node's extra_info: the files' "
                                                                    "custom metadata, file_name and file_id.")
    search_filters_inference_schema: dict[str, Any] | None = Field(
        None, description="Accepted; the local server infers no filters (inferred_search_filters is null).")
    retrieve_image_nodes: bool | None = None
    retrieve_page_figure_nodes: bool | None = None
    retrieve_page_screenshot_nodes: bool | None = None
    class_name: str | None = None


class RetrieveRequest(RetrievalParams):
    # unknown fields are kept only to be named in the response's Warning header
    model_config = ConfigDict(extra="allow")

    query: str = Field(min_length=1, description="The search query.")


class PipelineCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    embedding_config: dict[str, Any] | None = Field(
        None, description="Recorded. {\"type\": \"HUGGINGFACE_API_EMBEDDING\", \"component\": {\"model_name\": ...}} "
                          "chooses one of the local server's models (all-MiniLM-L6-v2, the default, or "
                          "wordllama-l2-supercat-256 with the fast-embed extra; another name is a 422); a hosted "
                          "provider's config is recorded and embedded with the default.")
    transform_config: dict[str, Any] | None = Field(
        None, description='{"mode": "auto", "chunk_size", "chunk_overlap"} (MiniLM word pieces) or '
                          '{"mode": "advanced", "chunking_config": {"chunk_size", "chunk_overlap"}}.')
    pipeline_type: PipelineType | None = None
    preset_retrieval_parameters: RetrievalParams | None = None
    data_sink_id: str | None = None
    data_sink: dict[str, Any] | None = None
    llama_parse_parameters: dict[str, Any] | None = None
    metadata_config: dict[str, Any] | None = None
    retrieval_config: dict[str, Any] | None = Field(
        None, description="llamaeval extension: engine parameters (see the simplified API's pipeline).")


class PipelineUpdate(_In):
    name: str | None = Field(None, min_length=1, max_length=200)
    embedding_config: dict[str, Any] | None = None
    transform_config: dict[str, Any] | None = None
    pipeline_type: PipelineType | None = None
    preset_retrieval_parameters: RetrievalParams | None = None
    data_sink_id: str | None = None
    llama_parse_parameters: dict[str, Any] | None = None
    metadata_config: dict[str, Any] | None = None
    retrieval_config: dict[str, Any] | None = None


class PipelineFileCreate(_In):
    file_id: str
    custom_metadata: dict[str, Any] | None = None


class PipelineFileUpdate(_In):
    custom_metadata: dict[str, Any] | None = None


class CloudDocumentCreate(_In):
    text: str
    metadata: dict[str, Any] | None = None
    id: str | None = Field(None, min_length=1, max_length=500)
    excluded_embed_metadata_keys: list[str] | None = None
    excluded_llm_metadata_keys: list[str] | None = None


class DataSourceCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    source_type: str
    component: dict[str, Any] | None = None
    custom_metadata: dict[str, Any] | None = None


class DataSourceUpdate(_In):
    source_type: str | None = None
    name: str | None = Field(None, min_length=1, max_length=200)
    component: dict[str, Any] | None = None
    custom_metadata: dict[str, Any] | None = None


class DataSinkCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    sink_type: str
    component: dict[str, Any] | None = None


class DataSinkUpdate(_In):
    name: str | None = Field(None, min_length=1, max_length=200)
    sink_type: str | None = None
    component: dict[str, Any] | None = None


class PipelineDataSourceCreate(_In):
    data_source_id: str
    sync_interval: float | None = Field(None, ge=0, le=10 ** 9)
