"""Each API key belongs to an account; an account never sees another's objects (404, ids do not leak)."""

from __future__ import annotations

import pytest
from server_helpers import api, upload

from llamaeval.server import create_api_key_in

pytestmark = pytest.mark.both_backends


def test_accounts_are_isolated(server, account_sources):
    (account_sources / "iso").mkdir(exist_ok=True)
    (account_sources / "iso" / "plans.txt").write_text("the secret plans in a folder")
    other_key, record = create_api_key_in(server.data_dir, name="mallory", database=server.database)
    with api(server) as a, api(server, other_key) as b:
        project = a.post("/projects", json={"name": "secret"}).json()["id"]
        file_id = upload(a, project, "s.txt", b"the secret plans").json()["id"]
        pipeline = a.post("/pipelines", json={"name": "p", "project_id": project}).json()["id"]
        a.put(f"/pipelines/{pipeline}/files", json=[{"file_id": file_id}]).raise_for_status()
        ds = a.post("/data-sources", json={"name": "d", "source_type": "directory", "project_id": project,
                                           "config": {"path": "iso"}}).json()["id"]

        assert project not in {p["id"] for p in b.get("/projects").json()}
        for path in (f"/projects/{project}", f"/pipelines/{pipeline}", f"/pipelines/{pipeline}/files",
                     f"/pipelines/{pipeline}/jobs", f"/pipelines/{pipeline}/data-sources",
                     f"/pipelines/{pipeline}/data-sinks", f"/files/{file_id}"):
            assert b.get(path).status_code == 404, path
        for params_path in ("/pipelines", "/data-sources"):
            assert b.get(params_path, params={"project_id": project}).status_code == 404
        assert b.post(f"/pipelines/{pipeline}/sync").status_code == 404
        assert b.post(f"/pipelines/{pipeline}/retrieve", json={"query": "secret"}).status_code == 404
        assert b.delete(f"/pipelines/{pipeline}").status_code == 404
        assert b.post("/pipelines", json={"name": "x", "project_id": project}).status_code == 404
        assert upload(b, project, "x.txt", b"x").status_code == 404
        # B cannot use A's file or data source in its own pipeline either
        own = b.post("/projects", json={"name": "mine"}).json()["id"]
        own_pipeline = b.post("/pipelines", json={"name": "p", "project_id": own}).json()["id"]
        r = b.put(f"/pipelines/{own_pipeline}/files", json=[{"file_id": file_id}])
        assert r.status_code == 400 and "unknown file" in r.json()["detail"]
        r = b.put(f"/pipelines/{own_pipeline}/data-sources", json=[{"data_source_id": ds}])
        assert r.status_code == 400
        # nor A's folder of the sources root: B's directory sources resolve under B's own folder
        own_root = account_sources.parent / record.account_id
        own_root.mkdir(exist_ok=True)
        for path in ("iso", f"../{account_sources.name}/iso", str(account_sources / "iso"), ".."):
            r = b.post("/data-sources", json={"name": "peek", "source_type": "directory", "project_id": own,
                                              "config": {"path": path}})
            assert r.status_code == 400, (path, r.text)
            if not path.startswith("/"):  # the message echoes the client's path, never the server's own
                assert str(account_sources.parent) not in r.text
        # and A still has everything
        assert a.get(f"/pipelines/{pipeline}").json()["num_files"] == 1
        assert [p["id"] for p in a.get("/projects").json()].count(project) == 1
        assert own not in {p["id"] for p in a.get("/projects").json()}
    assert record.account_id and record.prefix.startswith("llx-")


def test_second_key_of_same_account_sees_the_same_objects(server):
    with api(server) as a:
        project = a.post("/projects", json={"name": "shared"}).json()["id"]
    from llamaeval.server import create_api_key
    from llamaeval.server._database import open_storage

    storage = open_storage(server.database, server.data_dir)
    try:
        first = next(k for k in storage.list_api_keys() if k.name == "embedded")
        key, rec = create_api_key(storage, "laptop", account_id=first.account_id)
    finally:
        storage.close()
    with api(server, key) as again:
        assert again.get(f"/projects/{project}").status_code == 200
