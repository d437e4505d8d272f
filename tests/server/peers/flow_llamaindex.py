"""Peer flow: LlamaIndex's ``LlamaCloudIndex`` (llama-index-indices-managed-llama-cloud 0.12, on llama-cloud 1.6)
against a LlamaCloud-dialect server.

Standalone (no llamaeval import): runs inside a venv with ``llama-index-indices-managed-llama-cloud``.

    python flow_llamaindex.py --base-url http://127.0.0.1:PORT/cloud --api-key KEY --data-dir DIR

``DIR`` holds small ``.txt`` files and ``metadata.json`` ({file name: {"doc_id": ..., "topic": ...}}).
No LLM is used: documents are built in memory, retrieval goes through ``as_retriever``.
Each step is recorded as pass/fail; the last stdout line is ``{"steps": [{"name", "ok", "error"}]}``;
exit code 1 if any step failed.
"""

from __future__ import annotations

import argparse
import sys
import uuid
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

warnings.simplefilter("ignore", DeprecationWarning)

from llama_index.core import Document  # noqa: E402
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters  # noqa: E402
from llama_index.indices.managed.llama_cloud import LlamaCloudIndex  # noqa: E402
from _flowkit import check, CTX, distinctive_query, load_data, need, report, step  # noqa: E402

VERSIONS = {p: version(p) for p in ("llama-index-indices-managed-llama-cloud", "llama-cloud", "llama-index-core")}
def to_document(d: dict[str, Any]) -> Document:
    return Document(id_=f"li-{d['doc_id']}", text=d["text"],
                    metadata={"doc_id": d["doc_id"], "topic": d["topic"], "file_name": d["file_name"]})


# ---------------------------------------------------------------- flow
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--data-dir", required=True, type=Path)
    args = ap.parse_args()
    docs = load_data(args.data_dir)
    target, late = docs[1], docs[-1]  # ``late`` is inserted after from_documents
    query = distinctive_query(docs, target)
    topic = target["topic"]
    name = f"peer-llamaindex-{uuid.uuid4().hex[:8]}"
    conn = {"api_key": args.api_key, "base_url": args.base_url}
    print(f"{VERSIONS} query={query!r}", file=sys.stderr)

    def from_documents() -> None:
        index = LlamaCloudIndex.from_documents(
            [to_document(d) for d in docs if d is not late], name=name, project_name="Default",
            transform_config={"mode": "auto", "chunk_size": 256, "chunk_overlap": 32}, raise_on_error=True, **conn)
        check(index.project.name == "Default" and index.pipeline.name == name,
              f"index on project {index.project.name!r} pipeline {index.pipeline.name!r}")
        check(bool(index.id), "index without id")
        CTX["index"] = index

    def ref_doc_info() -> None:
        (index,) = need("index")
        info = index.ref_doc_info
        expected = {f"li-{d['doc_id']}" for d in docs if d is not late}
        check(expected <= set(info), f"ref_doc_info ids {sorted(info)} miss {sorted(expected - set(info))}")
        check(info[f"li-{target['doc_id']}"].metadata.get("topic") == topic, "document metadata not kept")

    def insert() -> None:
        (index,) = need("index")
        index.insert(to_document(late))  # documents.create + sync + waits (raise_on_error=True)
        nodes = index.as_retriever(dense_similarity_top_k=5, sparse_similarity_top_k=5, alpha=0.5,
                                   retrieval_mode="chunks").retrieve(distinctive_query(docs, late))
        check(len(nodes) > 0 and nodes[0].node.metadata.get("doc_id") == late["doc_id"],
              f"inserted doc not retrieved first: {[n.node.metadata.get('doc_id') for n in nodes]}")

    step("LlamaCloudIndex.from_documents (project_name=Default)", from_documents)
    step("index.ref_doc_info (documents/paginated)", ref_doc_info)
    step("index.insert + retrieve it", insert)

    by_doc = {d["doc_id"]: d for d in docs}

    def retrieve(**kw: Any) -> list[Any]:
        (index,) = need("index")
        return index.as_retriever(**kw).retrieve(query)

    def retrieve_hybrid() -> None:
        nodes = retrieve(dense_similarity_top_k=5, sparse_similarity_top_k=5, alpha=0.5, retrieval_mode="chunks")
        check(len(nodes) > 0, "no nodes")
        check(nodes[0].node.metadata.get("doc_id") == target["doc_id"],
              f"top node doc_id {nodes[0].node.metadata.get('doc_id')} != {target['doc_id']}")
        for n in nodes:
            m = n.node.metadata
            check(bool(n.node.get_content()), "node without text")
            check(m.get("doc_id") in by_doc and m.get("topic") == by_doc[m["doc_id"]]["topic"],
                  f"document metadata not on the node: {m}")
            check(n.score is not None, "node without score")

    def retrieve_rerank() -> None:
        nodes = retrieve(dense_similarity_top_k=8, sparse_similarity_top_k=8, alpha=0.5, enable_reranking=True,
                         rerank_top_n=2)
        check(1 <= len(nodes) <= 2, f"rerank_top_n=2 gave {len(nodes)} nodes")
        check(nodes[0].node.metadata.get("doc_id") == target["doc_id"], "reranked top node is not the target")

    def retrieve_filter() -> None:
        filters = MetadataFilters(filters=[MetadataFilter(key="topic", value=topic, operator=FilterOperator.EQ)])
        nodes = retrieve(dense_similarity_top_k=10, sparse_similarity_top_k=10, alpha=0.5, filters=filters)
        got = [n.node.metadata.get("topic") for n in nodes]
        check(len(got) > 0 and all(t == topic for t in got), f"topic == {topic} filter returned {got}")

    def retrieve_files_via_content() -> None:
        nodes = retrieve(retrieval_mode="files_via_content", files_top_k=1)
        got = {n.node.metadata.get("doc_id") for n in nodes}
        check(len(nodes) > 0 and got == {target["doc_id"]}, f"files_via_content files_top_k=1 returned {got}")

    step("as_retriever(hybrid, top_k 5/5).retrieve: top node is the target doc", retrieve_hybrid)
    step("as_retriever(enable_reranking, rerank_top_n=2)", retrieve_rerank)
    step("as_retriever(filters topic ==)", retrieve_filter)
    step("as_retriever(files_via_content, files_top_k=1)", retrieve_files_via_content)

    def reopen() -> None:
        (index,) = need("index")
        again = LlamaCloudIndex(name=name, project_name="Default", **conn)
        check(again.id == index.id and again.project.id == index.project.id, f"reopened {again.id} vs {index.id}")
        nodes = again.as_retriever(dense_similarity_top_k=3, sparse_similarity_top_k=3, alpha=0.5).retrieve(query)
        check(len(nodes) > 0 and nodes[0].node.metadata.get("doc_id") == target["doc_id"],
              "reopened index retrieves badly")

    def delete_ref_doc() -> None:
        (index,) = need("index")
        victim = docs[0]
        index.delete_ref_doc(f"li-{victim['doc_id']}", raise_if_not_found=True)
        index.wait_for_completion()
        nodes = index.as_retriever(dense_similarity_top_k=10, sparse_similarity_top_k=10, alpha=0.5).retrieve(
            distinctive_query(docs, victim))
        check(all(n.node.metadata.get("doc_id") != victim["doc_id"] for n in nodes), "deleted document still retrieved")

    def delete_index() -> None:
        (index,) = need("index")
        index._client.pipelines.delete(pipeline_id=index.id)  # no LlamaCloudIndex.delete: the SDK client it wraps

    step("LlamaCloudIndex(name=, project_name='Default') reopens it", reopen)
    step("index.delete_ref_doc + wait_for_completion", delete_ref_doc)
    step("delete the pipeline", delete_index)

    return report(VERSIONS)


if __name__ == "__main__":
    sys.exit(main())
