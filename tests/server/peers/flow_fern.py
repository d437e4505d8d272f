"""Peer flow: the older Fern-generated LlamaCloud SDK (``llama-cloud`` 0.1.x, e.g. 0.1.46) against a
LlamaCloud-dialect server.

Standalone (no llamaeval import): runs inside a venv with ``llama-cloud==0.1.46``.

    python flow_fern.py --base-url http://127.0.0.1:PORT/cloud --api-key KEY --data-dir DIR

``DIR`` holds small ``.txt`` files and ``metadata.json`` ({file name: {"doc_id": ..., "topic": ...}}).
Fern parses responses with pydantic (v1 API): required fields and enums are enforced.
Each step is recorded as pass/fail; the last stdout line is ``{"steps": [{"name", "ok", "error"}]}``;
exit code 1 if any step failed.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

from llama_cloud import (
    AutoTransformConfig,
    CloudDocumentCreate,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    PipelineCreate,
    PipelineFileCreate,
    PipelineType,
    PresetRetrievalParams,
    RetrievalMode,
)
from llama_cloud.client import LlamaCloud
from llama_cloud.core.api_error import ApiError
from _flowkit import check, CTX, distinctive_query, load_data, need, report, step  # noqa: E402
from _flowkit import poll as poll_status  # noqa: E402

SDK_VERSION = version("llama-cloud")


def status_str(s: Any) -> str:
    return getattr(s, "value", s)


def node_meta(rn: Any) -> dict[str, Any]:
    return dict(rn.node.extra_info or {})


def is_404(exc: ApiError) -> bool:
    return exc.status_code == 404


# ---------------------------------------------------------------- flow
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for ingestion")
    args = ap.parse_args()
    docs = load_data(args.data_dir)
    by_doc = {d["doc_id"]: d for d in docs}
    target = docs[1]
    query = distinctive_query(docs, target)
    topic = target["topic"]
    print(f"llama-cloud {SDK_VERSION} (Fern) query={query!r}", file=sys.stderr)

    client = LlamaCloud(base_url=args.base_url, token=args.api_key, timeout=60)
    name = f"peer-fern-{uuid.uuid4().hex[:8]}"

    # -- projects
    def list_projects() -> None:
        projects = client.projects.list_projects()
        default = [p for p in projects if p.name == "Default"]
        check(len(default) == 1, f"expected one project named 'Default', got {[p.name for p in projects]}")
        CTX["project_id"] = default[0].id
        named = client.projects.list_projects(project_name="Default")
        check([p.id for p in named] == [default[0].id], f"project_name=Default filter returned {named}")

    def get_project() -> None:
        (pid,) = need("project_id")
        p = client.projects.get_project(pid)
        check(p.id == pid and p.name == "Default" and bool(p.organization_id), f"get project returned {p}")

    step("projects.list_projects (find Default)", list_projects)
    step("projects.get_project", get_project)

    # -- pipeline lifecycle
    tc = AutoTransformConfig(chunk_size=256, chunk_overlap=32)  # Fern sends no "mode" here

    def preset(**kw: Any) -> PresetRetrievalParams:
        base = dict(dense_similarity_top_k=5, sparse_similarity_top_k=5, alpha=0.5, enable_reranking=False,
                    retrieval_mode=RetrievalMode.CHUNKS)
        return PresetRetrievalParams(**{**base, **kw})

    def create_pipeline() -> None:
        (proj,) = need("project_id")
        p = client.pipelines.create_pipeline(project_id=proj, request=PipelineCreate(
            name=name, pipeline_type=PipelineType.MANAGED, transform_config=tc, preset_retrieval_parameters=preset()))
        check(p.name == name and p.project_id == proj, f"created {p.name!r} in {p.project_id!r}")
        tcfg = p.transform_config
        check(tcfg is not None and tcfg.chunk_size == 256 and tcfg.chunk_overlap == 32 and tcfg.mode == "auto",
              f"transform_config not kept: {tcfg}")
        check(p.preset_retrieval_parameters is not None and p.preset_retrieval_parameters.dense_similarity_top_k == 5,
              f"preset not kept: {p.preset_retrieval_parameters}")
        CTX["pipeline_id"] = p.id

    def upsert_pipeline() -> None:
        proj, pid = need("project_id", "pipeline_id")
        p = client.pipelines.upsert_pipeline(project_id=proj, request=PipelineCreate(
            name=name, transform_config=tc, preset_retrieval_parameters=preset(dense_similarity_top_k=6)))
        check(p.id == pid, f"upsert by name created {p.id} instead of updating {pid}")
        check(p.preset_retrieval_parameters.dense_similarity_top_k == 6,
              f"upsert preset {p.preset_retrieval_parameters}")

    def get_pipeline() -> None:
        (pid,) = need("pipeline_id")
        p = client.pipelines.get_pipeline(pid)
        check(p.id == pid and p.name == name and p.preset_retrieval_parameters.dense_similarity_top_k == 6,
              f"get returned {p.id} {p.name} {p.preset_retrieval_parameters}")

    def search_pipelines() -> None:
        proj, pid = need("project_id", "pipeline_id")
        found = client.pipelines.search_pipelines(project_id=proj, pipeline_name=name)
        check([p.id for p in found] == [pid], f"search_pipelines(pipeline_name=) returned {[p.id for p in found]}")

    def update_pipeline() -> None:
        (pid,) = need("pipeline_id")
        p = client.pipelines.update_existing_pipeline(
            pid, preset_retrieval_parameters=preset(sparse_similarity_top_k=7))
        check(p.id == pid and p.preset_retrieval_parameters.sparse_similarity_top_k == 7,
              f"update preset {p.preset_retrieval_parameters}")

    step("pipelines.create_pipeline", create_pipeline)
    step("pipelines.upsert_pipeline (same name -> same id)", upsert_pipeline)
    step("pipelines.get_pipeline", get_pipeline)
    step("pipelines.search_pipelines (pipeline_name)", search_pipelines)
    step("pipelines.update_existing_pipeline", update_pipeline)

    # -- files: half through POST /api/v1/files (upload_file), half through POST /api/v1/beta/files (file+purpose)
    legacy = docs[: len(docs) // 2]
    beta = docs[len(docs) // 2:]

    def upload_legacy() -> None:
        (proj,) = need("project_id")
        for d in legacy:
            with open(d["path"], "rb") as fh:
                f = client.files.upload_file(upload_file=fh, project_id=proj)
            check(bool(f.id) and f.name == d["file_name"] and f.project_id == proj, f"uploaded {d['file_name']} -> {f}")
            CTX.setdefault("file_ids", {})[d["doc_id"]] = f.id

    def upload_beta() -> None:
        (proj,) = need("project_id")
        for d in beta:
            fh = io.BytesIO(d["text"].encode("utf-8"))
            fh.name = d["file_name"]
            f = client.beta.upload_file(file=fh, purpose="user_data", project_id=proj)
            check(bool(f.id) and f.name == d["file_name"] and f.project_id == proj, f"uploaded {d['file_name']} -> {f}")
            CTX.setdefault("file_ids", {})[d["doc_id"]] = f.id

    def get_file() -> None:
        (ids,) = need("file_ids")
        f = client.files.get_file(ids[legacy[0]["doc_id"]])
        check(f.id == ids[legacy[0]["doc_id"]] and f.name == legacy[0]["file_name"], f"get_file returned {f}")

    step("files.upload_file (POST /files, upload_file)", upload_legacy)
    step("beta.upload_file (POST /beta/files, file + purpose)", upload_beta)
    step("files.get_file", get_file)

    def add_files() -> None:
        pid, ids = need("pipeline_id", "file_ids")
        check(len(ids) == len(docs), f"only {len(ids)} of {len(docs)} files uploaded")
        req = [PipelineFileCreate(file_id=ids[d["doc_id"]],
                                  custom_metadata={"doc_id": d["doc_id"], "topic": d["topic"]}) for d in docs]
        pfs = client.pipeline_files.add_files_to_pipeline_api(pid, request=req)
        check(len(pfs) == len(docs), f"PUT files returned {len(pfs)} pipeline files for {len(docs)}")
        for pf in pfs:
            check(pf.pipeline_id == pid and pf.file_id in ids.values(), f"bad pipeline file {pf}")
            check((pf.custom_metadata or {}).get("doc_id") in by_doc,
                  f"custom_metadata not echoed: {pf.custom_metadata}")

    step("pipeline_files.add_files_to_pipeline_api (custom_metadata)", add_files)

    def poll(get: Callable[[], Any], deadline: float) -> Any:
        return poll_status(get, deadline, lambda st: status_str(st.status))

    def wait_ingestion(file_ids: list[str] | None = None) -> None:
        (pid,) = need("pipeline_id")
        deadline = time.monotonic() + args.timeout
        for fid in file_ids or []:
            st = poll(lambda fid=fid: client.pipeline_files.get_pipeline_file_status(fid, pid), deadline)
            check(status_str(st.status) == "SUCCESS", f"file {fid} ended {st.status}: {st.error}")
        st = poll(lambda: client.pipelines.get_pipeline_status(pid), deadline)
        check(status_str(st.status) == "SUCCESS", f"pipeline ended {st.status}: {st.error}")

    def wait_files() -> None:
        (ids,) = need("file_ids")
        wait_ingestion(list(ids.values()))

    step("wait for ingestion (get_pipeline_file_status, get_pipeline_status)", wait_files)

    def list_files2() -> None:
        pid, ids = need("pipeline_id", "file_ids")
        seen: dict[str, Any] = {}
        offset = 0
        while True:  # manual pagination, limit 2
            page = client.pipeline_files.list_pipeline_files_2(pid, limit=2, offset=offset)
            check(page.offset == offset and page.limit == 2, f"page offset/limit {page.offset}/{page.limit}")
            check(page.total_count == len(docs), f"total_count {page.total_count} != {len(docs)}")
            check(len(page.files) <= 2, f"limit=2 page has {len(page.files)} files")
            for pf in page.files:
                seen[pf.file_id] = pf
            offset += len(page.files)
            if not page.files or offset >= page.total_count:
                break
        check(set(seen) == set(ids.values()), f"files2 listed {sorted(seen)} expected {sorted(ids.values())}")
        for pf in seen.values():
            check(status_str(pf.status) == "SUCCESS", f"pipeline file {pf.file_id} status {pf.status}")
            check((pf.custom_metadata or {}).get("doc_id") in by_doc, f"custom_metadata lost: {pf.custom_metadata}")

    def status_counts() -> None:
        (pid,) = need("pipeline_id")
        c = client.pipeline_files.get_pipeline_file_status_counts(pid)
        check(c.total_count == len(docs) and c.counts.get("SUCCESS") == len(docs), f"status counts {c}")

    step("pipeline_files.list_pipeline_files_2 (limit=2 pages)", list_files2)
    step("pipeline_files.get_pipeline_file_status_counts", status_counts)

    # -- retrieval
    def search(**kw: Any) -> Any:
        proj, pid = need("project_id", "pipeline_id")
        return client.pipelines.run_search(pid, project_id=proj, **kw)

    def eq(key: str, value: Any) -> MetadataFilters:
        return MetadataFilters(filters=[MetadataFilter(key=key, value=value, operator=FilterOperator.EQUAL_TO)])

    def retrieve_hybrid() -> None:
        r = search(query=query, dense_similarity_top_k=5, sparse_similarity_top_k=5, alpha=0.5,
                   enable_reranking=False, retrieval_mode=RetrievalMode.CHUNKS)
        check(r.pipeline_id == CTX["pipeline_id"] and len(r.retrieval_nodes) > 0, f"{len(r.retrieval_nodes)} nodes")
        top = node_meta(r.retrieval_nodes[0])
        check(top.get("doc_id") == target["doc_id"], f"top node doc_id {top.get('doc_id')} != {target['doc_id']}")
        for rn in r.retrieval_nodes:
            m = node_meta(rn)
            check(bool(rn.node.text) and m.get("file_id") in CTX["file_ids"].values(), f"node metadata {m}")
            check(m.get("topic") == by_doc[m["doc_id"]]["topic"], f"custom metadata not on the node: {m}")

    def retrieve_rerank() -> None:
        r = search(query=query, dense_similarity_top_k=8, sparse_similarity_top_k=8, alpha=0.5,
                   enable_reranking=True, rerank_top_n=2)
        check(1 <= len(r.retrieval_nodes) <= 2, f"rerank_top_n=2 gave {len(r.retrieval_nodes)} nodes")
        check(node_meta(r.retrieval_nodes[0]).get("doc_id") == target["doc_id"], "reranked top node not the target")

    def retrieve_filter() -> None:
        other = next(d for d in docs if d["topic"] != topic)
        r = search(query=query + " " + distinctive_query(docs, other), dense_similarity_top_k=10,
                   sparse_similarity_top_k=10, alpha=0.5, search_filters=eq("topic", topic))
        got = [node_meta(n).get("topic") for n in r.retrieval_nodes]
        check(len(got) > 0 and all(t == topic for t in got), f"topic == {topic} filter returned topics {got}")

    def retrieve_filter_nin() -> None:
        excluded = [target["doc_id"]]
        r = search(query=query, dense_similarity_top_k=10, sparse_similarity_top_k=10, alpha=0.5,
                   search_filters=MetadataFilters(filters=[MetadataFilter(key="doc_id", value=excluded,
                                                                          operator=FilterOperator.NIN)],
                                                  condition=FilterCondition.AND))
        got = {node_meta(n).get("doc_id") for n in r.retrieval_nodes}
        check(target["doc_id"] not in got, f"doc_id nin {excluded} still returned it: {got}")

    def retrieve_files_via_content() -> None:
        r = search(query=query, retrieval_mode=RetrievalMode.FILES_VIA_CONTENT, files_top_k=1)
        files = {node_meta(n).get("file_id") or node_meta(n).get("doc_id") for n in r.retrieval_nodes}
        check(len(r.retrieval_nodes) > 0 and len(files) <= 1, f"files_top_k=1 returned files {files}")
        check(node_meta(r.retrieval_nodes[0]).get("doc_id") == target["doc_id"],
              "files_via_content top file not the target")

    step("run_search hybrid: top node is the target doc", retrieve_hybrid)
    step("run_search enable_reranking rerank_top_n=2", retrieve_rerank)
    step("run_search search_filters topic ==", retrieve_filter)
    step("run_search search_filters doc_id nin", retrieve_filter_nin)
    step("run_search files_via_content files_top_k=1", retrieve_files_via_content)

    def update_file_metadata() -> None:
        pid, ids = need("pipeline_id", "file_ids")
        pf = client.pipeline_files.update_pipeline_file(ids[target["doc_id"]], pid, custom_metadata={
            "doc_id": target["doc_id"], "topic": topic, "reviewed": "yes"})
        check((pf.custom_metadata or {}).get("reviewed") == "yes", f"update returned {pf.custom_metadata}")
        wait_ingestion()
        r = search(query=query, dense_similarity_top_k=10, sparse_similarity_top_k=10, alpha=0.5,
                   search_filters=eq("reviewed", "yes"))
        got = {node_meta(n).get("doc_id") for n in r.retrieval_nodes}
        check(got == {target["doc_id"]}, f"filter on the updated metadata returned docs {got}")

    step("pipeline_files.update_pipeline_file custom_metadata (and search by it)", update_file_metadata)

    # -- documents
    doc_id = f"peer-doc-{uuid.uuid4().hex[:6]}"
    doc_text = ("Quetzalcoatl zeppelins orbit marmalade lighthouses while quixotic xylophonists "
                "serenade the phosphorescent archipelago.")

    def documents_create() -> None:
        (pid,) = need("pipeline_id")
        out = client.pipelines.create_batch_pipeline_documents(pid, request=[
            CloudDocumentCreate(id=doc_id, text=doc_text, metadata={"doc_id": doc_id, "topic": "zeta"})])
        check([d.id for d in out] == [doc_id], f"create echoed ids {[d.id for d in out]}")
        deadline = time.monotonic() + args.timeout
        st = poll(lambda: client.pipelines.get_pipeline_document_status(doc_id, pid), deadline)
        check(status_str(st.status) == "SUCCESS", f"document status {st.status}")
        wait_ingestion()
        CTX["doc_id"] = doc_id

    def documents_list_get() -> None:
        pid, did = need("pipeline_id", "doc_id")
        page = client.pipelines.paginated_list_pipeline_documents(pid, skip=0, limit=50)
        check(did in [d.id for d in page.documents], f"paginated list missing {did}")
        check(page.total_count >= 1 and page.limit == 50 and page.offset == 0,
              f"page total/limit/offset {page.total_count}/{page.limit}/{page.offset}")
        plain = client.pipelines.list_pipeline_documents(pid, skip=0, limit=50)
        check(did in [d.id for d in plain], "GET /documents (array) missing the document")
        d = client.pipelines.get_pipeline_document(did, pid)
        check(d.id == did and d.text == doc_text, f"get_pipeline_document returned {d}")

    def documents_search() -> None:
        need("doc_id")
        r = search(query="quetzalcoatl zeppelins marmalade lighthouses", dense_similarity_top_k=5,
                   sparse_similarity_top_k=5, alpha=0.5, search_filters=eq("topic", "zeta"))
        got = {node_meta(n).get("doc_id") for n in r.retrieval_nodes}
        check(got == {doc_id}, f"search of the API document returned {got}")

    def documents_upsert() -> None:
        pid, did = need("pipeline_id", "doc_id")
        out = client.pipelines.upsert_batch_pipeline_documents(pid, request=[
            CloudDocumentCreate(id=did, text=doc_text + " Upserted.", metadata={"doc_id": did, "topic": "zeta"})])
        check([d.id for d in out] == [did], f"upsert echoed {[d.id for d in out]}")
        check(client.pipelines.get_pipeline_document(did, pid).text.endswith("Upserted."),
              "upsert did not replace the text")

    def documents_delete() -> None:
        pid, did = need("pipeline_id", "doc_id")
        client.pipelines.delete_pipeline_document(did, pid)
        try:
            client.pipelines.get_pipeline_document(did, pid)
        except ApiError as exc:
            check(is_404(exc), f"get after delete: {exc.status_code}")
        else:
            raise AssertionError("document still there after delete")

    step("create_batch_pipeline_documents + get_pipeline_document_status", documents_create)
    step("paginated_list_pipeline_documents + list_pipeline_documents + get", documents_list_get)
    step("run_search the API document (topic == zeta)", documents_search)
    step("upsert_batch_pipeline_documents", documents_upsert)
    step("delete_pipeline_document (then 404)", documents_delete)

    # -- sync, jobs
    def sync() -> None:
        (pid,) = need("pipeline_id")
        p = client.pipelines.sync_pipeline(pid)
        check(p.id == pid, f"sync returned pipeline {p.id}")
        wait_ingestion()

    def sync_cancel() -> None:
        (pid,) = need("pipeline_id")
        p = client.pipelines.cancel_pipeline_sync(pid)
        check(p.id == pid, f"sync/cancel returned pipeline {p.id}")

    def list_jobs() -> None:
        (proj,) = need("project_id")
        # No Fern method for GET /api/v1/jobs: same base URL and auth headers as the SDK, raw request.
        w = client._client_wrapper
        r = w.httpx_client.request("GET", f"{w.get_base_url()}/api/v1/jobs", params={"project_id": proj},
                                   headers=w.get_headers())
        check(r.status_code == 200, f"GET /api/v1/jobs -> {r.status_code} {r.text[:300]}")
        body = r.json()
        check(isinstance(body, dict) and isinstance(body.get("jobs"), list) and body["jobs"], f"jobs {str(body)[:300]}")

    step("sync_pipeline (returns Pipeline)", sync)
    step("cancel_pipeline_sync (returns Pipeline)", sync_cancel)
    step("GET /api/v1/jobs (raw, SDK auth)", list_jobs)

    # -- deletes
    def delete_pipeline_file() -> None:
        pid, ids = need("pipeline_id", "file_ids")
        victim = docs[0]
        client.pipeline_files.delete_pipeline_file(ids[victim["doc_id"]], pid)
        page = client.pipeline_files.list_pipeline_files_2(pid, limit=100, offset=0)
        check(ids[victim["doc_id"]] not in {pf.file_id for pf in page.files}, "file still listed after delete")
        check(page.total_count == len(docs) - 1, f"total_count after delete {page.total_count}")

    def delete_file() -> None:
        (ids,) = need("file_ids")
        fid = ids[docs[0]["doc_id"]]
        client.files.delete_file(fid)
        try:
            client.files.get_file(fid)
        except ApiError as exc:
            check(is_404(exc), f"get_file after delete: {exc.status_code}")
        else:
            raise AssertionError("file still there after delete")

    def delete_pipeline() -> None:
        (pid,) = need("pipeline_id")
        client.pipelines.delete_pipeline(pid)
        try:
            client.pipelines.get_pipeline(pid)
        except ApiError as exc:
            check(is_404(exc), f"get after delete: {exc.status_code}")
        else:
            raise AssertionError("pipeline still there after delete")

    step("pipeline_files.delete_pipeline_file", delete_pipeline_file)
    step("files.delete_file (then 404)", delete_file)
    step("pipelines.delete_pipeline (then 404)", delete_pipeline)

    return report(f"llama-cloud {SDK_VERSION} (Fern)")


if __name__ == "__main__":
    sys.exit(main())
