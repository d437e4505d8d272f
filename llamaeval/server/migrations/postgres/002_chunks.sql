-- Chunks and their vectors per completed index version (pgvector), so every host reads what one
-- ingest worker built. Needs the pgvector extension (PostgreSQL superuser, or created once by an
-- administrator: CREATE EXTENSION vector). Vectors are MiniLM's, 384 dimensions, L2-normalised
-- (cosine = inner product). HNSW indexes are partial, one per (pipeline, index version), created
-- by _vectors.ChunkVectors.build_ann: a filtered search over one shared HNSW graph would lose recall.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE chunks (
    pipeline_id TEXT NOT NULL, index_version TEXT NOT NULL, position INTEGER NOT NULL,
    chunk_id TEXT NOT NULL, file_id TEXT NOT NULL, file_name TEXT NOT NULL, chunk_index INTEGER NOT NULL,
    start_char INTEGER NOT NULL, end_char INTEGER NOT NULL, text TEXT NOT NULL, title TEXT,
    metadata TEXT NOT NULL, embedding vector(384) NOT NULL,
    PRIMARY KEY (pipeline_id, index_version, position));
-- The small files of each published index version (config.json, manifest.json, inputs.sha256, the
-- second-stage model it keeps under models/), as JSON {relative path: text}: with the chunks they
-- rebuild the very same index on a host that did not build it.
CREATE TABLE index_versions (
    pipeline_id TEXT NOT NULL, index_version TEXT NOT NULL, files TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline_id, index_version));
