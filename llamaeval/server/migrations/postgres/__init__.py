"""PostgreSQL schema: ``NNN_name.sql`` files, applied in order by ``_postgres.migrate`` (one transaction
each, recorded in ``schema_version``). Never edit a released file: add the next number."""
