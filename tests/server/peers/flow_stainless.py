"""Peer flow: the official Stainless LlamaCloud SDK (``llama-cloud`` 2.x, also 1.6) against a LlamaCloud-dialect server.

Standalone (no llamaeval import): runs inside any venv that has ``llama-cloud`` installed.

    python flow_stainless.py --base-url http://127.0.0.1:PORT/cloud --api-key KEY --data-dir DIR

``DIR`` holds small ``.txt`` files and ``metadata.json`` ({file name: {"doc_id": ..., "topic": ...}}).
With llama-cloud >= 2 the client validates every response strictly (``_strict_response_validation=True``).
Each step is recorded as pass/fail; the last stdout line is ``{"steps": [{"name", "ok", "error"}]}``;
exit code 1 if any step failed.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable

warnings.simplefilter("ignore", DeprecationWarning)  # the v1 pipeline methods are marked deprecated in 2.x

import llama_cloud  # noqa: E402
from llama_cloud import LlamaCloud, NotFoundError  # noqa: E402
from _flowkit import check, CTX, distinctive_query, load_data, need, poll, report, step, TERMINAL  # noqa: E402

SDK_VERSION = getattr(llama_cloud, "__version__", "0")
SDK_MAJOR = int(re.match(r"\d+", SDK_VERSION).group())  # type: ignore[union-attr]

def node_meta(rn: Any) -> dict[str, Any]:
    return dict(rn.node.extra_info or {})


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
    strict = SDK_MAJOR >= 2
    print(f"llama-cloud {SDK_VERSION} strict={strict} query={query!r}", file=sys.stderr)

    extra = {"_strict_response_validation": True} if strict else {}
    client = LlamaCloud(api_key=args.api_key, base_url=args.base_url, max_retries=2, timeout=60.0, **extra)
    name = f"peer-stainless-{uuid.uuid4().hex[:8]}"

    def pq() -> dict[str, Any]:
        """project_id on pipeline sub-resources: 2.x sends it, 1.6 has no such parameter."""
        return {"project_id": CTX["project_id"]} if strict and "project_id" in CTX else {}

    # -- projects
    def list_projects() -> None:
        projects = client.projects.list()
        default = [p for p in projects if p.name == "Default"]
        check(len(default) == 1, f"expected one project named 'Default', got {[p.name for p in projects]}")
        CTX["project_id"] = default[0].id
        CTX["organization_id"] = default[0].organization_id
        named = client.projects.list(project_name="Default")
        check([p.id for p in named] == [default[0].id], f"project_name=Default filter returned {named}")

    def get_project() -> None:
        (pid,) = need("project_id")
        p = client.projects.get(pid)
        check(p.id == pid and p.name == "Default", f"get project returned {p}")
        check(bool(p.organization_id), "project without organization_id")

    step("projects.list (find Default)", list_projects)
    step("projects.get", get_project)

    # -- pipeline lifecycle
    tc = {"mode": "auto", "chunk_size": 256, "chunk_overlap": 32}
    preset = {"dense_similarity_top_k": 5, "sparse_similarity_top_k": 5, "alpha": 0.5,
              "enable_reranking": False, "retrieval_mode": "chunks"}

    def create_pipeline() -> None:
        (proj,) = need("project_id")
        p = client.pipelines.create(name=name, project_id=proj, pipeline_type="MANAGED", transform_config=tc,
                                    preset_retrieval_parameters=preset)
        check(p.name == name and p.project_id == proj, f"created pipeline {p.name!r} in {p.project_id!r}")
        check(p.embedding_config is not None, "no embedding_config in the created pipeline")
        tcfg = p.transform_config
        check(tcfg is not None and getattr(tcfg, "chunk_size", None) == 256
              and getattr(tcfg, "chunk_overlap", None) == 32,
              f"transform_config not kept: {tcfg}")
        check(p.preset_retrieval_parameters is not None and p.preset_retrieval_parameters.dense_similarity_top_k == 5,
              f"preset_retrieval_parameters not kept: {p.preset_retrieval_parameters}")
        CTX["pipeline_id"] = p.id

    def upsert_pipeline() -> None:
        proj, pid = need("project_id", "pipeline_id")
        p = client.pipelines.upsert(name=name, project_id=proj, transform_config=tc,
                                    preset_retrieval_parameters={**preset, "dense_similarity_top_k": 6})
        check(p.id == pid, f"upsert by name created a new pipeline {p.id} instead of updating {pid}")
        check(p.preset_retrieval_parameters is not None and p.preset_retrieval_parameters.dense_similarity_top_k == 6,
              f"upsert did not update the preset: {p.preset_retrieval_parameters}")

    def get_pipeline() -> None:
        (pid,) = need("pipeline_id")
        p = client.pipelines.get(pid)
        check(p.id == pid and p.name == name, f"get returned {p.id} {p.name}")
        check(p.preset_retrieval_parameters is not None and p.preset_retrieval_parameters.dense_similarity_top_k == 6,
              f"preset after upsert: {p.preset_retrieval_parameters}")

    def list_pipelines() -> None:
        proj, pid = need("project_id", "pipeline_id")
        found = client.pipelines.list(project_id=proj, pipeline_name=name)
        check([p.id for p in found] == [pid], f"pipelines.list(pipeline_name=) returned {[p.id for p in found]}")

    def update_pipeline() -> None:
        (pid,) = need("pipeline_id")
        p = client.pipelines.update(pid, preset_retrieval_parameters={**preset, "sparse_similarity_top_k": 7})
        check(p.id == pid and p.preset_retrieval_parameters is not None
              and p.preset_retrieval_parameters.sparse_similarity_top_k == 7,
              f"update did not change the preset: {p.preset_retrieval_parameters}")

    step("pipelines.create", create_pipeline)
    step("pipelines.upsert (same name -> same id)", upsert_pipeline)
    step("pipelines.get", get_pipeline)
    step("pipelines.list (pipeline_name)", list_pipelines)
    step("pipelines.update", update_pipeline)

    # -- files
    def upload_files() -> None:
        (proj,) = need("project_id")
        ids: dict[str, str] = {}
        for d in docs:
            f = client.files.create(file=(d["file_name"], d["text"].encode("utf-8"), "text/plain"),
                                    purpose="user_data", project_id=proj)
            check(bool(f.id) and f.name == d["file_name"], f"uploaded {d['file_name']} -> {f.id} {f.name!r}")
            check(f.project_id == proj, f"file project {f.project_id} != {proj}")
            ids[d["doc_id"]] = f.id
        CTX["file_ids"] = ids

    def get_file() -> None:
        (ids,) = need("file_ids")
        fid = ids[target["doc_id"]]
        if hasattr(client.files, "retrieve"):  # 2.x: GET /api/v1/beta/files/{id}
            f = client.files.retrieve(fid)
            check(f.id == fid and f.name == target["file_name"], f"files.retrieve returned {f.id} {f.name}")
        else:  # 1.6: list with a file_ids filter
            found = [f.id for f in client.files.list(file_ids=[fid])]
            check(fid in found, f"files.list(file_ids=) did not return {fid}: {found}")

    def add_files() -> None:
        pid, ids = need("pipeline_id", "file_ids")
        body = [{"file_id": ids[d["doc_id"]], "custom_metadata": {"doc_id": d["doc_id"], "topic": d["topic"]}}
                for d in docs]
        pfs = client.pipelines.files.create(pid, body=body, **pq())
        check(len(pfs) == len(docs), f"PUT files returned {len(pfs)} pipeline files for {len(docs)}")
        for pf in pfs:
            check(pf.pipeline_id == pid and pf.file_id in ids.values(), f"bad pipeline file {pf}")
            cm = pf.custom_metadata or {}
            check(cm.get("doc_id") in by_doc, f"custom_metadata not echoed: {cm}")

    step("files.create (beta upload, purpose=user_data)", upload_files)
    step("files.retrieve", get_file)
    step("pipelines.files.create (custom_metadata)", add_files)

    def wait_ingestion(file_ids: list[str] | None = None) -> str:
        (pid,) = need("pipeline_id")
        deadline = time.monotonic() + args.timeout
        for fid in file_ids or []:
            st = _poll(lambda fid=fid: client.pipelines.files.get_status(fid, pipeline_id=pid, **pq()), deadline)
            check(st.status == "SUCCESS", f"file {fid} ended {st.status}: {st.error}")
        st = _poll(lambda: client.pipelines.get_status(pid), deadline)
        check(st.status == "SUCCESS", f"pipeline ended {st.status}: {st.error}")
        return st.status

    def wait_files() -> None:
        (ids,) = need("file_ids")
        wait_ingestion(list(ids.values()))

    step("wait for ingestion (files/{id}/status, /status)", wait_files)

    def list_files() -> None:
        pid, ids = need("pipeline_id", "file_ids")
        seen = {}
        for pf in client.pipelines.files.list(pid, limit=2, **pq()):  # auto-paginates: exercises offset/total_count
            seen[pf.file_id] = pf
        check(set(seen) == set(ids.values()), f"files2 listed {sorted(seen)} expected {sorted(ids.values())}")
        for pf in seen.values():
            check(pf.status == "SUCCESS", f"pipeline file {pf.file_id} status {pf.status}")
            check((pf.custom_metadata or {}).get("doc_id") in by_doc, f"custom_metadata lost: {pf.custom_metadata}")
            CTX.setdefault("pipeline_file_ids", []).append(pf.id)

    def status_counts() -> None:
        (pid,) = need("pipeline_id")
        c = client.pipelines.files.get_status_counts(pid, **pq())
        check(c.total_count == len(docs) and c.counts.get("SUCCESS") == len(docs), f"status counts {c}")

    step("pipelines.files.list (files2, limit=2 pages)", list_files)
    step("pipelines.files.get_status_counts", status_counts)

    # -- retrieval
    def retrieve(**kw: Any) -> Any:
        (pid,) = need("pipeline_id")
        return client.pipelines.retrieve(pid, project_id=CTX.get("project_id"), **kw)

    def retrieve_hybrid() -> None:
        r = retrieve(query=query, dense_similarity_top_k=5, sparse_similarity_top_k=5, alpha=0.5,
                     enable_reranking=False, retrieval_mode="chunks")
        check(r.pipeline_id == CTX["pipeline_id"], f"pipeline_id {r.pipeline_id}")
        check(len(r.retrieval_nodes) > 0, "no nodes")
        top = node_meta(r.retrieval_nodes[0])
        check(top.get("doc_id") == target["doc_id"],
              f"top node doc_id {top.get('doc_id')} != {target['doc_id']} for a query of its distinctive words")
        for rn in r.retrieval_nodes:
            m = node_meta(rn)
            check(bool(rn.node.text), "node without text")
            check(m.get("file_id") in CTX["file_ids"].values(), f"extra_info.file_id missing/unknown: {m}")
            check(m.get("topic") == by_doc[m["doc_id"]]["topic"], f"custom metadata not on the node: {m}")
        scores = [rn.score for rn in r.retrieval_nodes if rn.score is not None]
        check(scores == sorted(scores, reverse=True), f"scores not descending: {scores}")

    def retrieve_sparse_only() -> None:
        r = retrieve(query=query, sparse_similarity_top_k=3, dense_similarity_top_k=3, alpha=0.0)
        check(len(r.retrieval_nodes) > 0 and node_meta(r.retrieval_nodes[0]).get("doc_id") == target["doc_id"],
              f"alpha=0 (keyword only) top doc {[node_meta(n).get('doc_id') for n in r.retrieval_nodes]}")

    def retrieve_dense_only() -> None:
        r = retrieve(query=query, dense_similarity_top_k=3, sparse_similarity_top_k=3, alpha=1.0)
        check(0 < len(r.retrieval_nodes) <= 3, f"alpha=1 dense_similarity_top_k=3 gave {len(r.retrieval_nodes)} nodes")

    def retrieve_rerank() -> None:
        r = retrieve(query=query, dense_similarity_top_k=8, sparse_similarity_top_k=8, alpha=0.5,
                     enable_reranking=True, rerank_top_n=2)
        check(1 <= len(r.retrieval_nodes) <= 2, f"rerank_top_n=2 gave {len(r.retrieval_nodes)} nodes")
        check(node_meta(r.retrieval_nodes[0]).get("doc_id") == target["doc_id"], "reranked top node is not the target")

    def retrieve_filter_eq() -> None:
        other = next(d for d in docs if d["topic"] != topic)
        r = retrieve(query=query + " " + distinctive_query(docs, other), dense_similarity_top_k=10,
                     sparse_similarity_top_k=10, alpha=0.5,
                     search_filters={"filters": [{"key": "topic", "value": topic, "operator": "=="}]})
        got = [node_meta(n).get("topic") for n in r.retrieval_nodes]
        check(len(got) > 0 and all(t == topic for t in got), f"topic == {topic} filter returned topics {got}")

    def retrieve_filter_in() -> None:
        wanted = [docs[0]["doc_id"], docs[2]["doc_id"]]
        r = retrieve(query=query, dense_similarity_top_k=10, sparse_similarity_top_k=10, alpha=0.5,
                     search_filters={"filters": [{"key": "doc_id", "value": wanted, "operator": "in"}],
                                     "condition": "and"})
        got = {node_meta(n).get("doc_id") for n in r.retrieval_nodes}
        check(bool(got) and got <= set(wanted), f"doc_id in {wanted} filter returned {got}")

    def retrieve_files_via_content() -> None:
        r = retrieve(query=query, retrieval_mode="files_via_content", files_top_k=1)
        files = {node_meta(n).get("file_id") or node_meta(n).get("doc_id") for n in r.retrieval_nodes}
        check(len(r.retrieval_nodes) > 0, "files_via_content returned nothing")
        check(len(files) <= 1, f"files_top_k=1 returned {len(files)} files")
        check(node_meta(r.retrieval_nodes[0]).get("doc_id") == target["doc_id"],
              "files_via_content top file not the target")

    step("retrieve hybrid (alpha=0.5, top_k 5/5): top node is the target doc", retrieve_hybrid)
    step("retrieve alpha=0 (sparse only)", retrieve_sparse_only)
    step("retrieve alpha=1 (dense only, dense_similarity_top_k=3)", retrieve_dense_only)
    step("retrieve enable_reranking rerank_top_n=2", retrieve_rerank)
    step("retrieve search_filters topic ==", retrieve_filter_eq)
    step("retrieve search_filters doc_id in [..]", retrieve_filter_in)
    step("retrieve files_via_content files_top_k=1", retrieve_files_via_content)

    # -- pipeline file metadata update
    def update_file_metadata() -> None:
        pid, ids = need("pipeline_id", "file_ids")
        pf = client.pipelines.files.update(ids[target["doc_id"]], pipeline_id=pid, **pq(),
                                           custom_metadata={"doc_id": target["doc_id"], "topic": topic,
                                                            "reviewed": "yes"})
        check((pf.custom_metadata or {}).get("reviewed") == "yes", f"update returned {pf.custom_metadata}")
        wait_ingestion()
        r = retrieve(query=query, dense_similarity_top_k=10, sparse_similarity_top_k=10, alpha=0.5,
                     search_filters={"filters": [{"key": "reviewed", "value": "yes", "operator": "=="}]})
        got = {node_meta(n).get("doc_id") for n in r.retrieval_nodes}
        check(got == {target["doc_id"]}, f"filter on the updated metadata returned docs {got}")

    step("pipelines.files.update custom_metadata (and retrieve by it)", update_file_metadata)

    # -- documents
    doc_id = f"peer-doc-{uuid.uuid4().hex[:6]}"
    doc_text = ("Quetzalcoatl zeppelins orbit marmalade lighthouses while quixotic xylophonists "
                "serenade the phosphorescent archipelago.")

    def documents_create() -> None:
        (pid,) = need("pipeline_id")
        out = client.pipelines.documents.create(pid, **pq(), body=[
            {"id": doc_id, "text": doc_text, "metadata": {"doc_id": doc_id, "topic": "zeta"}}])
        check([d.id for d in out] == [doc_id], f"documents.create echoed ids {[d.id for d in out]}")
        check(out[0].text == doc_text and out[0].metadata.get("topic") == "zeta", f"document echoed {out[0]}")
        st = _poll(lambda: client.pipelines.documents.get_status(doc_id, pipeline_id=pid, **pq()),
                   time.monotonic() + args.timeout)
        check(st.status == "SUCCESS", f"document status {st.status}")
        wait_ingestion()
        CTX["doc_id"] = doc_id

    def documents_list_get() -> None:
        pid, did = need("pipeline_id", "doc_id")
        ids = [d.id for d in client.pipelines.documents.list(pid, skip=0, limit=2, **pq())]
        check(did in ids, f"documents.list (paginated) missing {did}: {ids}")
        d = client.pipelines.documents.get(did, pipeline_id=pid, **pq())
        check(d.id == did and d.text == doc_text, f"documents.get returned {d}")

    def documents_retrieve() -> None:
        need("doc_id")
        r = retrieve(query="quetzalcoatl zeppelins marmalade lighthouses", dense_similarity_top_k=5,
                     sparse_similarity_top_k=5, alpha=0.5,
                     search_filters={"filters": [{"key": "topic", "value": "zeta", "operator": "=="}]})
        got = {node_meta(n).get("doc_id") for n in r.retrieval_nodes}
        check(got == {doc_id}, f"retrieve of the API document returned {got}")

    def documents_upsert() -> None:
        pid, did = need("pipeline_id", "doc_id")
        out = client.pipelines.documents.upsert(pid, **pq(), body=[
            {"id": did, "text": doc_text + " Upserted.", "metadata": {"doc_id": did, "topic": "zeta"}}])
        check([d.id for d in out] == [did], f"upsert echoed {[d.id for d in out]}")
        d = client.pipelines.documents.get(did, pipeline_id=pid, **pq())
        check(d.text.endswith("Upserted."), f"upsert did not replace the text: {d.text!r}")

    def documents_delete() -> None:
        pid, did = need("pipeline_id", "doc_id")
        client.pipelines.documents.delete(did, pipeline_id=pid, **pq())
        try:
            client.pipelines.documents.get(did, pipeline_id=pid, **pq())
        except NotFoundError:
            pass
        else:
            raise AssertionError("document still there after delete")
        wait_ingestion()
        r = retrieve(query="quetzalcoatl zeppelins marmalade lighthouses", dense_similarity_top_k=5,
                     sparse_similarity_top_k=5, alpha=0.5)
        check(all(node_meta(n).get("doc_id") != did for n in r.retrieval_nodes), "deleted document still retrieved")

    step("documents.create + documents.get_status", documents_create)
    step("documents.list (paginated) + documents.get", documents_list_get)
    step("retrieve the API document (topic == zeta)", documents_retrieve)
    step("documents.upsert", documents_upsert)
    step("documents.delete (then 404, not retrieved)", documents_delete)

    # -- sync, jobs
    def sync() -> None:
        (pid,) = need("pipeline_id")
        p = client.pipelines.sync.create(pid, **pq())
        check(p.id == pid, f"sync returned pipeline {p.id}")
        wait_ingestion()

    def sync_cancel() -> None:
        (pid,) = need("pipeline_id")
        p = client.pipelines.sync.cancel(pid, **pq())
        check(p.id == pid, f"sync/cancel returned pipeline {p.id}")
        st = client.pipelines.get_status(pid)
        check(st.status in TERMINAL | {"NOT_STARTED", "IN_PROGRESS"}, f"status after cancel {st.status}")

    def list_jobs() -> None:
        (proj,) = need("project_id")
        # No SDK method for GET /api/v1/jobs in llama-cloud 1.6 / 2.x: use the SDK's raw request helper.
        body = client.get("/api/v1/jobs", cast_to=object, options={"params": {"project_id": proj}})
        check(isinstance(body, dict) and isinstance(body.get("jobs"), list), f"jobs response {str(body)[:300]}")
        check(len(body["jobs"]) > 0, "no jobs listed after ingesting")
        for j in body["jobs"]:
            rec = j.get("job_record", j)
            check(bool(rec.get("id")) and bool(rec.get("status")), f"job without id/status: {j}")

    step("pipelines.sync.create (returns Pipeline)", sync)
    step("pipelines.sync.cancel (returns Pipeline)", sync_cancel)
    step("GET /api/v1/jobs (raw client.get)", list_jobs)

    # -- deletes
    def delete_pipeline_file() -> None:
        pid, ids = need("pipeline_id", "file_ids")
        victim = docs[0]
        client.pipelines.files.delete(ids[victim["doc_id"]], pipeline_id=pid, **pq())
        listed = {pf.file_id for pf in client.pipelines.files.list(pid, **pq())}
        check(ids[victim["doc_id"]] not in listed, "file still listed after delete")
        wait_ingestion()
        r = retrieve(query=distinctive_query(docs, victim), dense_similarity_top_k=10, sparse_similarity_top_k=10,
                     alpha=0.5)
        check(all(node_meta(n).get("doc_id") != victim["doc_id"] for n in r.retrieval_nodes),
              "removed file still retrieved")

    def delete_file() -> None:
        (ids,) = need("file_ids")
        client.files.delete(ids[docs[0]["doc_id"]])

    def delete_pipeline() -> None:
        (pid,) = need("pipeline_id")
        client.pipelines.delete(pid)
        try:
            client.pipelines.get(pid)
        except NotFoundError:
            return
        raise AssertionError("pipeline still there after delete")

    step("pipelines.files.delete (removed from files2 and retrieval)", delete_pipeline_file)
    step("files.delete", delete_file)
    step("pipelines.delete (then 404)", delete_pipeline)

    return report(f"llama-cloud {SDK_VERSION}", strict=strict)


def _poll(get: Callable[[], Any], deadline: float) -> Any:
    """Poll a ManagedIngestionStatusResponse until it is terminal (the SDK's own poller where it has one)."""
    try:
        from llama_cloud._polling import PollingTimeoutError, poll_until_complete
    except ImportError:  # older SDKs: the flows' plain loop
        return poll(get, deadline)
    try:
        return poll_until_complete(get, is_complete_fn=lambda s: s.status in TERMINAL, is_error_fn=lambda s: False,
                                   get_error_message_fn=lambda s: str(s), polling_interval=0.5, max_interval=2.0,
                                   timeout=max(1.0, deadline - time.monotonic()))
    except PollingTimeoutError as exc:
        raise TimeoutError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
