"""``llamaeval serve`` and ``llamaeval keys create|list``: run the local LlamaCloud-compatible server."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llamaeval.server import ServerConfig

__all__ = ["register"]


def _number_flags() -> list[tuple[str, str, bool, str, str, str]]:
    """The numeric settings of ``serve``: (flag, ``ServerConfig.from_env`` keyword and argparse dest,
    whole number?, unit, metavar, help)."""
    from llamaeval.server._config import (DEFAULT_INDEX_CACHE_MB, DEFAULT_MAX_JSON_MB, DEFAULT_MAX_QUERY_CHARS,
                                          DEFAULT_MAX_UPLOAD_MB)

    return [
        ("--max-upload-mb", "max_upload_mb", False, "MB", "MB",
         f"largest accepted file upload in megabytes; bigger ones get 413 "
         f"(default $LLAMAEVAL_MAX_UPLOAD_MB or {DEFAULT_MAX_UPLOAD_MB:g})"),
        ("--max-json-mb", "max_json_mb", False, "MB", "MB",
         f"largest JSON request body in megabytes (documents sent inline included); bigger ones get 413 "
         f"(default $LLAMAEVAL_MAX_JSON_MB or {DEFAULT_MAX_JSON_MB:g})"),
        ("--max-query-chars", "max_query_chars", True, "characters", "N",
         f"longest retrieve query in characters; longer ones get 413 "
         f"(default $LLAMAEVAL_MAX_QUERY_CHARS or {DEFAULT_MAX_QUERY_CHARS})"),
        ("--index-cache-mb", "index_cache_mb", False, "MB", "MB",
         f"memory budget of the loaded indexes in megabytes; the least recently used are unloaded beyond "
         f"it (default $LLAMAEVAL_INDEX_CACHE_MB or {DEFAULT_INDEX_CACHE_MB:g})"),
        ("--onnx-threads", "onnx_threads", True, "threads", "N",
         "onnxruntime threads of the embedder (default $LLAMAEVAL_ONNX_THREADS or onnxruntime's choice)"),
    ]


def _numbers(args: argparse.Namespace) -> dict[str, float | int]:
    """The numeric flags given, checked (ConfigurationError naming the flag), as ``from_env`` keywords."""
    from llamaeval.server._config import setting_number

    numbers: dict[str, float | int] = {}
    for flag, keyword, whole, unit, _, _ in _number_flags():
        raw = getattr(args, keyword)
        if raw is not None:
            value = setting_number(raw, flag, whole=whole, unit=unit)
            numbers[keyword] = int(value) if whole else value
    return numbers


def _server_config(args: argparse.Namespace, numbers: dict[str, float | int]) -> "ServerConfig":
    """The settings of ``serve``: each flag (``numbers``: the numeric ones, checked), else its
    environment variable, else the default (see ``ServerConfig.from_env``)."""
    from llamaeval.server import ServerConfig

    return ServerConfig.from_env(args.data_dir, args.sources_root, reranker=args.reranker,
                                 shared_sources_root=args.shared_sources_root, database=args.database, **numbers)


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
    serve.add_argument("--reranker", default=None, metavar="MODULE:FACTORY",
                       help="plug-in second stage: FACTORY() returns an object with score(query, passages) "
                            "(default $LLAMAEVAL_RERANKER; none)")
    limits = serve.add_argument_group(
        "limits and resources", "each flag wins over its environment variable, which wins over the default")
    for flag, _, _, _, metavar, help_text in _number_flags():
        limits.add_argument(flag, default=None, metavar=metavar, help=help_text)
    limits.add_argument("--shared-sources-root", action=argparse.BooleanOptionalAction, default=None,
                        help="every account's 'directory' data sources resolve under the whole --sources-root "
                             "(single-tenant servers only: any account can then read any folder under it); "
                             "default $LLAMAEVAL_SHARED_SOURCES_ROOT (1/0) or off: each account gets "
                             "<sources-root>/<account id>/")
    serve.add_argument("--database", default=None, metavar="URL",
                       help="metadata database: sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DBNAME "
                            "(default $LLAMAEVAL_DATABASE or SQLite in the data dir); PostgreSQL's schema is "
                            "created and migrated at start")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="API processes answering the port (default 1); more than one needs a PostgreSQL "
                            "--database, which they share (each also ingests unless $LLAMAEVAL_INGEST=0)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                       help="server log level (default info)")
    serve.set_defaults(func=_serve)

    keys = subparsers.add_parser("keys", help="manage the local server's API keys",
                                 description="Create or list API keys of a server data directory.")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    create = keys_sub.add_parser("create", help="create an API key (printed alone on the last line)")
    create.add_argument("--data-dir", type=Path, default=None, help="the server's data directory")
    create.add_argument("--database", default=None, metavar="URL",
                        help="the server's database when not the data dir's SQLite (see serve --database)")
    create.add_argument("--name", default="default", help="a name for the key (and its new account)")
    create.add_argument("--account", default=None,
                        help="add the key to this existing account id instead of a new account")
    create.set_defaults(func=_keys_create)
    listing = keys_sub.add_parser("list", help="list API keys (names and prefixes, never the keys)")
    listing.add_argument("--data-dir", type=Path, default=None, help="the server's data directory")
    listing.add_argument("--database", default=None, metavar="URL",
                         help="the server's database when not the data dir's SQLite (see serve --database)")
    listing.set_defaults(func=_keys_list)
    keys.set_defaults(func=lambda args: (keys.print_help(sys.stderr), 2)[1])


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from llamaeval._errors import ConfigurationError
    from llamaeval.server import create_app

    try:
        numbers = _numbers(args)
    except ConfigurationError as exc:  # a bad flag: one line naming it, exit 2 like any usage error
        print(f"llamaeval serve: error: {exc}", file=sys.stderr)
        return 2
    config = _server_config(args, numbers)  # a bad environment variable: named, exit 1
    if not 0 < args.port < 65536:
        print(f"llamaeval serve: error: --port must be in 1..65535, got {args.port}", file=sys.stderr)
        return 2
    from llamaeval.server._database import parse_database

    database = parse_database(config.database, config.data_dir)
    if args.workers < 1:
        print(f"llamaeval serve: error: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.workers > 1 and not database.is_postgres:
        print(f"llamaeval serve: error: --workers {args.workers} needs a PostgreSQL --database "
              "(postgresql://USER:PASSWORD@HOST:PORT/DBNAME): an SQLite database is one process's, with its "
              "ingest thread; run one process, or move the metadata to PostgreSQL", file=sys.stderr)
        return 2
    _configure_logging(args.log_level)
    print(f"llamaeval serve: data dir {config.data_dir}; database {database.shown}; "
          f"http://{args.host}:{args.port}/docs" + (f"; {args.workers} API processes" if args.workers > 1 else ""),
          flush=True)
    options = {"host": args.host, "port": args.port, "log_level": args.log_level,
               "access_log": args.log_level == "debug"}
    if args.workers == 1:
        uvicorn.run(create_app(config), **options)
        return 0
    # uvicorn's supervisor: the parent binds the port, spawns N processes that accept on it (each
    # builds its app with worker_app from the settings passed in the environment), restarts one
    # that dies, and stops them all on SIGTERM / SIGINT
    os.environ[_CONFIG_VAR] = json.dumps({"config": _config_fields(config), "log_level": args.log_level})
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=args.workers, **options)
    return 0


#: The settings of ``serve --workers N`` handed to its API processes (JSON, in their environment).
_CONFIG_VAR = "LLAMAEVAL_SERVE_WORKER_CONFIG"


def _configure_logging(level: str) -> None:
    import logging

    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)


def _config_fields(config: "ServerConfig") -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: (str(v) if isinstance(v := getattr(config, f.name), Path) else v) for f in fields(config)}


def worker_app() -> Any:
    """The app of one API process of ``serve --workers N`` (uvicorn calls it in each process)."""
    from llamaeval.server import ServerConfig, create_app

    raw = os.environ.get(_CONFIG_VAR)
    if not raw:
        raise RuntimeError(f"{_CONFIG_VAR} is not set: worker_app runs in the API processes of "
                           "`llamaeval serve --workers N`")
    settings = json.loads(raw)
    _configure_logging(settings["log_level"])
    return create_app(ServerConfig(**settings["config"]))


def _keys_target(args: argparse.Namespace, command: str) -> Path | None:
    """The data dir ``keys`` works on (None after printing why there is none)."""
    if args.data_dir is None and args.database is None:
        print(f"llamaeval keys {command}: error: give --data-dir DIR (its SQLite database) or --database URL",
              file=sys.stderr)
        return None
    return Path(args.data_dir) if args.data_dir is not None else Path(".")


def _keys_create(args: argparse.Namespace) -> int:
    from llamaeval.server import create_api_key_in

    data_dir = _keys_target(args, "create")
    if data_dir is None:
        return 2
    key, record = create_api_key_in(data_dir, name=args.name, account_id=args.account, database=args.database)
    print(f"created API key {record.prefix}... named {record.name!r} in account {record.account_id}")
    print("store it now: it is not shown again. Use it as 'Authorization: Bearer <key>'")
    print(key)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from llamaeval.server._database import open_storage, parse_database

    data_dir = _keys_target(args, "list")
    if data_dir is None:
        return 2
    database = parse_database(args.database, data_dir)
    if database.path is not None and not database.path.exists():
        print(f"llamaeval keys: error: no server database in {args.data_dir or database.path}", file=sys.stderr)
        return 1
    storage = open_storage(args.database, data_dir)
    try:
        for k in storage.list_api_keys():
            print(f"{k.prefix}...\t{k.name}\taccount {k.account_id}\tcreated {k.created_at.isoformat()}")
    finally:
        storage.close()
    return 0
