-- Uploaded file bytes in the database (llamaeval/server/_file_store.py), so ingest workers on
-- other hosts need no shared file system: each file is a run of pieces of at most 1 MiB, written
-- in one transaction (a file is all there or not at all). Files stored on disk before this
-- migration have no rows here: they are read from the data dir of the process that stored them,
-- and copied here by that process when it next starts.
CREATE TABLE file_contents (
    file_id TEXT NOT NULL, seq INTEGER NOT NULL, data BYTEA NOT NULL,
    PRIMARY KEY (file_id, seq));
-- uploads are mostly compressed already (PDF, DOCX): stored out of line without another attempt
ALTER TABLE file_contents ALTER COLUMN data SET STORAGE EXTERNAL;
