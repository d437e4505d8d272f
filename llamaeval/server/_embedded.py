"""``EmbeddedServer``: a real ``llamaeval serve`` subprocess on loopback, for tests, demos and notebooks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from llamaeval._errors import APIConnectionError, ConfigurationError

__all__ = ["EmbeddedServer", "ServerStartError"]


class ServerStartError(APIConnectionError):
    """The embedded server process did not come up (its log tail is in the message)."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedServer:
    """Start ``python -m llamaeval serve`` as a subprocess (honest latency: no GIL shared
    with the caller), create an API key for it and wait until ``/health`` answers.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. Attributes:
    ``base_url`` ("http://127.0.0.1:PORT", without /api/v1), ``api_key``, ``data_dir``,
    ``port``, ``log_path`` (the server's stdout+stderr). With ``data_dir=None`` a temporary
    directory is used and removed on stop. ``api_key``: reuse this key instead of creating
    one (e.g. when restarting on an existing data dir). ``reranker``: ``"module:factory"`` of a
    plug-in second stage (see ``llamaeval serve --reranker``). ``startup_timeout`` in seconds.
    ``settings``: more server settings as environment variables of the process, e.g.
    ``{"LLAMAEVAL_MAX_QUERY_CHARS": "2000", "LLAMAEVAL_SHARED_SOURCES_ROOT": "1"}`` (see
    ``ServerConfig.from_env``). ``shared_sources_root``: an embedded server is single-tenant (one
    fresh key), so by default its ``sources_root`` is that account's whole folder; False gives each
    account its own ``sources_root / account_id`` folder, as ``llamaeval serve`` does by default.
    ``account_id``: the account of ``api_key``. ``database``: the server's metadata database URL
    (``llamaeval serve --database``; default SQLite in the data dir), e.g.
    ``postgresql://user:pw@host:5432/llamaeval``; the API key is created there.
    """

    def __init__(self, data_dir: Path | None = None, host: str = "127.0.0.1", port: int | None = None, *,
                 sources_root: Path | None = None, max_upload_mb: float | None = None,
                 api_key: str | None = None, reranker: str | None = None,
                 startup_timeout: float = 60.0, settings: dict[str, str] | None = None,
                 shared_sources_root: bool = True, database: str | None = None) -> None:
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise ConfigurationError(f"port must be an int in 1..65535, got {port!r}")
        if startup_timeout <= 0:
            raise ConfigurationError("startup_timeout must be > 0 seconds")
        self._own_dir = data_dir is None
        self.data_dir: Path | None = Path(data_dir) if data_dir is not None else None
        self.host = host
        self.port = port
        self.sources_root = Path(sources_root) if sources_root is not None else None
        self.max_upload_mb = max_upload_mb
        self.api_key = api_key
        self.reranker = reranker
        if database is not None:
            from llamaeval.server._database import parse_database

            parse_database(database, self.data_dir or Path("."))  # a bad URL is named here
        self.database = database
        self.startup_timeout = float(startup_timeout)
        bad = [k for k in (settings or {}) if not k.startswith("LLAMAEVAL_")]
        if bad:
            raise ConfigurationError(f"settings are LLAMAEVAL_* environment variables, got {', '.join(bad)}")
        self.settings = {"LLAMAEVAL_SHARED_SOURCES_ROOT": "1" if shared_sources_root else "0",
                         **{k: str(v) for k, v in (settings or {}).items()}}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._log_fh = None

    @property
    def base_url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:8123`` (the API is under ``/api/v1``)."""
        if self.port is None:
            raise ConfigurationError("the server is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """``base_url`` + ``/api/v1``."""
        return self.base_url + "/api/v1"

    @property
    def account_id(self) -> str | None:
        """The account of ``api_key`` (None before a key exists)."""
        if self.api_key is None or self.data_dir is None:
            return None
        from llamaeval.server._database import open_storage
        from llamaeval.server._keys import hash_key

        storage = open_storage(self.database, self.data_dir)
        try:
            return storage.account_for_key_hash(hash_key(self.api_key))
        finally:
            storage.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "EmbeddedServer":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> "EmbeddedServer":
        """Start the process (creating the data dir and an API key if needed); returns self."""
        if self.running:
            return self
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="llamaeval-server-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.api_key is None:
            from llamaeval.server._keys import create_api_key_in

            self.api_key, _ = create_api_key_in(self.data_dir, name="embedded", database=self.database)
        fixed_port = self.port
        last_error: Exception | None = None
        for _ in range(3):  # a free port can be taken between probing and binding: retry
            self.port = fixed_port or _free_port(self.host)
            try:
                self._spawn()
                return self
            except ServerStartError as exc:
                last_error = exc
                if fixed_port is not None or "address already in use" not in str(exc).lower():
                    break
        raise last_error or ServerStartError("llamaeval serve did not start")

    def _spawn(self) -> None:
        import httpx

        cmd = [sys.executable, "-m", "llamaeval", "serve", "--host", self.host, "--port", str(self.port),
               "--data-dir", str(self.data_dir)]
        if self.sources_root is not None:
            cmd += ["--sources-root", str(self.sources_root)]
        if self.max_upload_mb is not None:
            cmd += ["--max-upload-mb", str(self.max_upload_mb)]
        if self.reranker is not None:
            cmd += ["--reranker", self.reranker]
        if self.database is not None:
            cmd += ["--database", self.database]
        env = {**os.environ, **self.settings}
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        self.log_path = Path(str(self.data_dir)) / "server.log"
        self._log_fh = open(self.log_path, "ab")
        self.process = subprocess.Popen(cmd, stdout=self._log_fh, stderr=subprocess.STDOUT, env=env,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    self._close_log()
                    raise ServerStartError(f"llamaeval serve exited with code {self.process.returncode}: "
                                           f"{self._log_tail()}")
                try:
                    if http.get(self.base_url + "/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop(remove=False)
        raise ServerStartError(f"llamaeval serve did not answer /health within {self.startup_timeout:.0f} s: "
                               f"{self._log_tail()}")

    def _log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text("utf-8", errors="replace")[-n:] if self.log_path else ""
        except OSError:
            return ""

    def _close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def stop(self, timeout: float = 15.0, *, remove: bool = True) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout`` seconds); a temp data dir
        is removed unless ``remove=False``."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self._close_log()
        if remove and self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
            self.api_key = None

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would; the data dir is kept."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
        self._close_log()

    def restart(self) -> "EmbeddedServer":
        """Stop and start again on the same data dir, port and API key."""
        self.stop(remove=False)
        return self.start()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedServer({self.base_url if self.port else 'no port'}, {state}, data_dir={self.data_dir})"
