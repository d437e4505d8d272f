-- The job queue of several ingest workers (llamaeval/server/_queue.py): a worker claims a job by
-- taking its lease and renews it while the job runs; a job whose lease expired (its worker died)
-- is claimed again by another worker, at most a few attempts. A cancel is a flag the running
-- worker reads between files, whichever process received it.
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT false;
