"""``llamaeval worker``: an ingest worker of a server on PostgreSQL (claims and runs sync jobs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``worker`` subcommand."""
    worker = subparsers.add_parser(
        "worker", help="run an ingest worker of a server on PostgreSQL",
        description="Claim sync jobs from the server's PostgreSQL database and run them (parse, chunk, embed, "
                    "index); run several, on one host or many, beside `llamaeval serve` processes. "
                    "A job whose worker dies is claimed again by another once its lease expires "
                    "($LLAMAEVAL_JOB_LEASE_S, default 30 s).")
    worker.add_argument("--database", default=None, metavar="URL",
                        help="postgresql://USER:PASSWORD@HOST:PORT/DBNAME (default $LLAMAEVAL_DATABASE)")
    worker.add_argument("--data-dir", type=Path, default=None,
                        help="this worker's chunks, embedding cache and indexes: a folder of its own (uploaded "
                             "files come from the database) (default $LLAMAEVAL_DATA_DIR or ./.llamaeval)")
    worker.add_argument("--sources-root", type=Path, default=None,
                        help="folder of 'directory' data sources, as the servers' (default $LLAMAEVAL_SOURCES_ROOT)")
    worker.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="log level (default info)")
    worker.set_defaults(func=_worker)


def _worker(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from threadpoolctl import threadpool_limits

    from llamaeval import engine
    from llamaeval.server._config import DataLayout, ServerConfig
    from llamaeval.server._database import open_storage, parse_database
    from llamaeval.server._queue import QueuedSyncService
    from llamaeval.server._shared_index import index_cache_for

    config = ServerConfig.from_env(args.data_dir, args.sources_root, database=args.database)
    database = parse_database(config.database, config.data_dir)
    if not database.is_postgres:
        print("llamaeval worker: error: a worker needs the server's PostgreSQL database: --database "
              "postgresql://... (an SQLite server ingests in its own process)", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    layout = DataLayout(config.data_dir)
    layout.create()
    storage = open_storage(config.database, config.data_dir)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with threadpool_limits(limits=1):
        embedder = engine.Embedders(num_threads=config.onnx_threads)  # one per model its pipelines name
        indexes = index_cache_for(storage, layout, embedder, config.load_reranker(), config.index_cache_bytes)
        sync = QueuedSyncService(storage, layout, config, embedder, indexes, url=database.url or "")
        sync.start()
        print(f"llamaeval worker: database {database.shown}; data dir {config.data_dir}", flush=True)
        try:
            while not done.wait(1.0):
                pass
        finally:
            sync.stop()
            storage.close()
    return 0
