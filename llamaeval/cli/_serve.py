"""``llamaeval serve`` and ``llamaeval keys create|list``: run the local LlamaCloud-compatible server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` and ``keys`` subcommands."""
    serve = subparsers.add_parser(
        "serve", help="run the local LlamaCloud-compatible server",
        description="Serve the LlamaCloud API (under /api/v1, docs at /docs) from a local data directory.")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument("--data-dir", type=Path, default=None,
                       help="metadata, files and indexes (default $LLAMAEVAL_DATA_DIR or ./.llamaeval)")
    serve.add_argument("--sources-root", type=Path, default=None,
                       help="folder under which 'directory' data sources may read "
                            "(default $LLAMAEVAL_SOURCES_ROOT; none: directory sources refused)")
    serve.add_argument("--max-upload-mb", type=float, default=None,
                       help="largest accepted upload in MB (default $LLAMAEVAL_MAX_UPLOAD_MB or 50)")
    serve.add_argument("--reranker", default=None, metavar="MODULE:FACTORY",
                       help="plug-in second stage: FACTORY() returns an object with score(query, passages) "
                            "(default $LLAMAEVAL_RERANKER; none)")
    serve.add_argument("--onnx-threads", type=int, default=None, metavar="N",
                       help="onnxruntime threads of the embedder (default $LLAMAEVAL_ONNX_THREADS or "
                            "onnxruntime's choice)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                       help="server log level (default info)")
    serve.set_defaults(func=_serve)

    keys = subparsers.add_parser("keys", help="manage the local server's API keys",
                                 description="Create or list API keys of a server data directory.")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    create = keys_sub.add_parser("create", help="create an API key (printed alone on the last line)")
    create.add_argument("--data-dir", type=Path, required=True, help="the server's data directory")
    create.add_argument("--name", default="default", help="a name for the key (and its new account)")
    create.add_argument("--account", default=None,
                        help="add the key to this existing account id instead of a new account")
    create.set_defaults(func=_keys_create)
    listing = keys_sub.add_parser("list", help="list API keys (names and prefixes, never the keys)")
    listing.add_argument("--data-dir", type=Path, required=True, help="the server's data directory")
    listing.set_defaults(func=_keys_list)
    keys.set_defaults(func=lambda args: (keys.print_help(sys.stderr), 2)[1])


def _serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from llamaeval.server import ServerConfig, create_app

    config = ServerConfig.from_env(args.data_dir, args.sources_root, args.max_upload_mb, args.reranker,
                                   args.onnx_threads)
    if not 0 < args.port < 65536:
        print(f"llamaeval serve: error: --port must be in 1..65535, got {args.port}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    print(f"llamaeval serve: data dir {config.data_dir}; http://{args.host}:{args.port}/docs", flush=True)
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level,
                access_log=args.log_level == "debug")
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    from llamaeval.server import create_api_key_in

    key, record = create_api_key_in(args.data_dir, name=args.name, account_id=args.account)
    print(f"created API key {record.prefix}... named {record.name!r} in account {record.account_id}")
    print("store it now: it is not shown again. Use it as 'Authorization: Bearer <key>'")
    print(key)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from llamaeval.server._sqlite import SQLiteStorage

    db = Path(args.data_dir) / "llamaeval.db"
    if not db.exists():
        print(f"llamaeval keys: error: no server database in {args.data_dir}", file=sys.stderr)
        return 1
    storage = SQLiteStorage(db)
    try:
        for k in storage.list_api_keys():
            print(f"{k.prefix}...\t{k.name}\taccount {k.account_id}\tcreated {k.created_at.isoformat()}")
    finally:
        storage.close()
    return 0
