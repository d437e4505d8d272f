"""Resolve the client's settings: argument, then environment, then region default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from llamaeval._errors import ConfigurationError

API_KEY_ENV = "LLAMA_CLOUD_API_KEY"
BASE_URL_ENV = "LLAMA_CLOUD_BASE_URL"
API_PREFIX = "/api/v1"

#: Documented LlamaCloud hosts. The OpenAPI file lists ``api.cloud.llamaindex.eu``
#: for the EU; LlamaCloud documents ``api.cloud.eu.llamaindex.ai``, which is used here.
REGIONS: dict[str, str] = {
    "us": "https://api.cloud.llamaindex.ai",
    "eu": "https://api.cloud.eu.llamaindex.ai",
}


#: The API dialects the client speaks: the simplified spec (the local server's ``/api/v1``)
#: and the real LlamaCloud API (the official SDKs' wire format).
SIMPLIFIED = "simplified"
LLAMACLOUD = "llamacloud"
DIALECTS: tuple[str, ...] = (SIMPLIFIED, LLAMACLOUD)
AUTO = "auto"


@dataclass(frozen=True)
class ClientConfig:
    """Resolved settings: ``base_url`` is the host root, ``api_root`` adds ``/api/v1``;
    ``dialect`` is ``"auto"`` (decided on first use) or one of ``DIALECTS``."""

    api_key: str
    base_url: str
    dialect: str = AUTO

    @property
    def api_root(self) -> str:
        return self.base_url + API_PREFIX

    def __repr__(self) -> str:  # never print the key
        return (f"ClientConfig(base_url={self.base_url!r}, api_key={mask_key(self.api_key)!r}, "
                f"dialect={self.dialect!r})")


def dialect_of_host(base_url: str) -> str | None:
    """The dialect a base URL implies without asking it: LlamaCloud's documented hosts speak
    the real API; anything else is decided by a probe (None)."""
    host = urlsplit(base_url).hostname or ""
    if base_url in REGIONS.values() or host.endswith(".llamaindex.ai"):
        return LLAMACLOUD
    return None


def mask_key(key: str) -> str:
    """Show only the last four characters of an API key."""
    return "…" + key[-4:] if len(key) > 8 else "…"


def normalise_base_url(url: str) -> str:
    """Strip a trailing slash and a trailing ``/api/v1``; the client appends it itself."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"base_url must be a non-empty string, got {url!r}")
    url = url.strip().rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)].rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"base_url must look like 'https://host[:port]' (without /api/v1), got {url!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"base_url must not carry a query or fragment, got {url!r}")
    return url


def resolve_config(
    api_key: str | None,
    base_url: str | None,
    region: str,
    environ: Mapping[str, str] | None = None,
    dialect: str = AUTO,
) -> ClientConfig:
    """Apply the precedence argument > environment > region default, and validate."""
    env = os.environ if environ is None else environ
    if dialect not in (AUTO, *DIALECTS):
        raise ConfigurationError(f"dialect must be one of {AUTO!r}, {', '.join(map(repr, DIALECTS))}; got {dialect!r}")
    if region not in REGIONS:
        raise ConfigurationError(f"region must be one of {sorted(REGIONS)}, got {region!r}")
    key = api_key if api_key is not None else env.get(API_KEY_ENV) or None
    if key is None:
        raise ConfigurationError(
            f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable"
        )
    if not isinstance(key, str) or not key.strip():
        raise ConfigurationError("api_key must be a non-empty string")
    url = normalise_base_url(base_url if base_url is not None else env.get(BASE_URL_ENV) or REGIONS[region])
    if dialect == AUTO:
        dialect = dialect_of_host(url) or AUTO
    return ClientConfig(api_key=key.strip(), base_url=url, dialect=dialect)
