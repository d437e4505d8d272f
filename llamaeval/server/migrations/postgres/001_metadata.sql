-- The metadata of the Storage protocol (llamaeval/server/_storage.py), as in SQLite.
-- JSON values are TEXT holding json.dumps output, exactly as SQLite stores them: jsonb would
-- reorder a client's keys and turn 1e308 into a 309-digit integer.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL, prefix TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE projects (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, name TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
CREATE INDEX projects_account ON projects(account_id);
CREATE TABLE files (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, project_id TEXT NOT NULL, name TEXT NOT NULL,
    file_size BIGINT NOT NULL, content_type TEXT NOT NULL, sha256 TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL,
    data_source_id TEXT, source_path TEXT, external_file_id TEXT, purpose TEXT);
CREATE INDEX files_source ON files(data_source_id, source_path);
CREATE INDEX files_project ON files(account_id, project_id);
CREATE TABLE pipelines (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, project_id TEXT NOT NULL, name TEXT NOT NULL,
    status TEXT NOT NULL, sync_interval BIGINT, retrieval_config TEXT NOT NULL,
    chunking_config TEXT NOT NULL, embedding_model TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL, num_chunks BIGINT NOT NULL DEFAULT 0,
    last_synced_at TIMESTAMPTZ, index_version TEXT, error TEXT, last_sync_started_at TIMESTAMPTZ,
    attributes TEXT NOT NULL DEFAULT '{}');
CREATE INDEX pipelines_project ON pipelines(account_id, project_id);
-- seq: insertion order (SQLite's rowid), the tie-breaker of listings
CREATE TABLE pipeline_files (
    pipeline_id TEXT NOT NULL, file_id TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
    metadata TEXT NOT NULL, error TEXT, num_chunks BIGINT NOT NULL DEFAULT 0, processed_key TEXT,
    data_source_id TEXT, added_at TIMESTAMPTZ, updated_at TIMESTAMPTZ,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (pipeline_id, file_id));
CREATE TABLE data_sources (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, project_id TEXT NOT NULL, name TEXT NOT NULL,
    source_type TEXT NOT NULL, config TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL);
CREATE TABLE pipeline_data_sources (
    pipeline_id TEXT NOT NULL, data_source_id TEXT NOT NULL, added_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (pipeline_id, data_source_id));
CREATE TABLE data_sinks (
    id TEXT PRIMARY KEY, account_id TEXT NOT NULL, project_id TEXT NOT NULL, name TEXT NOT NULL,
    sink_type TEXT NOT NULL, component TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, pipeline_id TEXT NOT NULL, account_id TEXT NOT NULL, status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, trigger TEXT NOT NULL, started_at TIMESTAMPTZ, completed_at TIMESTAMPTZ,
    error TEXT, num_files BIGINT NOT NULL DEFAULT 0, num_processed BIGINT NOT NULL DEFAULT 0,
    num_failed BIGINT NOT NULL DEFAULT 0, num_chunks BIGINT NOT NULL DEFAULT 0,
    seq BIGINT GENERATED ALWAYS AS IDENTITY);
CREATE INDEX jobs_pipeline ON jobs(pipeline_id, created_at);
CREATE INDEX jobs_unfinished ON jobs(status) WHERE status IN ('pending', 'running');
