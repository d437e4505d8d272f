-- A running sync job's chunk counters (so clients show chunks done/total with a rate and an ETA):
-- chunks of the files it processes, of them with a vector, and of them found in the embedding cache.
ALTER TABLE jobs ADD COLUMN num_chunks_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN num_chunks_done BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN num_chunks_cached BIGINT NOT NULL DEFAULT 0;
