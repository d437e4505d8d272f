"""API keys: generated with ``secrets``, stored only as a SHA-256 hash.

Keys carry 256 random bits, so a fast hash is enough (no password stretching is
needed: guessing a key is as hard as guessing the hash pre-image).
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from llamaeval._errors import ConfigurationError
from llamaeval.server._storage import ApiKey, Storage

__all__ = ["KEY_PREFIX", "hash_key", "new_key", "create_api_key", "create_api_key_in"]

KEY_PREFIX = "llx-"


def hash_key(key: str) -> str:
    """The stored form of ``key`` (hex SHA-256)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key (``llx-`` + 43 url-safe characters)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_api_key(storage: Storage, name: str = "default", account_id: str | None = None) -> tuple[str, ApiKey]:
    """Create a key in ``account_id`` (a new account named ``name`` when None); returns (key, record).

    The plain key is returned once and never stored.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError("key name must be a non-empty string")
    if account_id is None:
        account_id = storage.create_account(name).id
    elif storage.get_account(account_id) is None:
        raise ConfigurationError(f"no account {account_id!r} in this data directory")
    key = new_key()
    record = storage.create_api_key(account_id, name, hash_key(key), key[: len(KEY_PREFIX) + 6])
    return key, record


def create_api_key_in(data_dir: Path, name: str = "default", account_id: str | None = None, *,
                      database: str | None = None) -> tuple[str, ApiKey]:
    """:func:`create_api_key` on the server's database: ``database`` (a URL, see
    ``llamaeval serve --database``), by default the SQLite file of the data directory ``data_dir``."""
    from llamaeval.server._database import open_storage

    storage = open_storage(database, data_dir)
    try:
        return create_api_key(storage, name, account_id)
    finally:
        storage.close()
