"""Settings precedence (argument > environment > region) and argument checks."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from llamaeval import AsyncLlamaCloud, ConfigurationError, LlamaCloud
from llamaeval.client import REGIONS, RetryPolicy
from llamaeval.client._config import resolve_config


def test_argument_beats_environment():
    env = {"LLAMA_CLOUD_API_KEY": "env-key-123456", "LLAMA_CLOUD_BASE_URL": "http://env.local:9"}
    cfg = resolve_config("arg-key-123456", "http://arg.local:1", "us", environ=env)
    assert (cfg.api_key, cfg.base_url) == ("arg-key-123456", "http://arg.local:1")


def test_environment_beats_region():
    env = {"LLAMA_CLOUD_API_KEY": "env-key-123456", "LLAMA_CLOUD_BASE_URL": "http://env.local:9/"}
    cfg = resolve_config(None, None, "eu", environ=env)
    assert (cfg.api_key, cfg.base_url) == ("env-key-123456", "http://env.local:9")


@pytest.mark.parametrize(("region", "host"), [("us", "https://api.cloud.llamaindex.ai"),
                                              ("eu", "https://api.cloud.eu.llamaindex.ai")])
def test_region_defaults_are_the_documented_hosts(region, host):
    cfg = resolve_config("k" * 12, None, region, environ={})
    assert cfg.base_url == host == REGIONS[region]
    assert cfg.api_root == host + "/api/v1"


@pytest.mark.parametrize("url", ["http://h:8000", "http://h:8000/", "http://h:8000/api/v1", "http://h:8000/api/v1/"])
def test_base_url_with_or_without_api_prefix(url):
    assert resolve_config("k" * 12, url, "us", environ={}).api_root == "http://h:8000/api/v1"


def test_client_reads_the_environment(monkeypatch):
    monkeypatch.setenv("LLAMA_CLOUD_API_KEY", "env-key-abcdef")
    monkeypatch.setenv("LLAMA_CLOUD_BASE_URL", "http://env.local:7")
    seen = []
    transport = httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200, json=[]))
    with LlamaCloud(transport=transport) as lc:
        lc.projects.list()
    assert str(seen[0].url) == "http://env.local:7/api/v1/projects"
    assert seen[0].headers["authorization"] == "Bearer env-key-abcdef"


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"api_key": None}, "LLAMA_CLOUD_API_KEY"),
    ({"api_key": "  "}, "api_key"),
    ({"region": "apac"}, "region"),
    ({"base_url": "ftp://x"}, "base_url"),
    ({"base_url": "localhost:8000"}, "base_url"),
    ({"max_retries": -1}, "max_retries"),
    ({"max_retries": 1.5}, "max_retries"),
    ({"timeout": 0}, "timeout"),
    ({"retry": "fast"}, "RetryPolicy"),
])
def test_bad_settings_raise_configuration_error(monkeypatch, kwargs, needle):
    monkeypatch.delenv("LLAMA_CLOUD_API_KEY", raising=False)
    monkeypatch.delenv("LLAMA_CLOUD_BASE_URL", raising=False)
    settings = {"api_key": "k" * 12, **kwargs}
    with pytest.raises(ConfigurationError, match=needle):
        LlamaCloud(**settings)


def test_transport_and_http_client_are_exclusive():
    with pytest.raises(ConfigurationError, match="not both"):
        LlamaCloud(api_key="k" * 12, transport=httpx.MockTransport(lambda r: None), http_client=httpx.Client())


def test_custom_http_client_is_used_and_not_closed():
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=[])),
                        headers={"X-Team": "eval"})
    seen = []
    http.event_hooks["request"] = [seen.append]
    with LlamaCloud(api_key="k" * 12, base_url="http://h", http_client=http) as lc:
        lc.projects.list()
    assert seen[0].headers["x-team"] == "eval"
    assert not http.is_closed
    http.close()


def test_async_client_rejects_a_sync_http_client():
    with pytest.raises(ConfigurationError, match="AsyncClient"):
        AsyncLlamaCloud(api_key="k" * 12, http_client=httpx.Client())


def test_to_async_keeps_settings_and_transport():
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=[{"id": "p1", "name": "n"}]))
    policy = RetryPolicy(backoff_base=0.1)
    lc = LlamaCloud(api_key="k" * 12, base_url="http://h/api/v1", max_retries=5, timeout=3.0,
                    transport=transport, retry=policy)
    alc = lc.to_async()
    assert isinstance(alc, AsyncLlamaCloud)
    settings = (alc.base_url, alc.api_key, alc.max_retries, alc.timeout, alc.retry)
    assert settings == ("http://h", "k" * 12, 5, 3.0, policy)

    async def go():
        async with alc:
            return await alc.projects.list()

    assert asyncio.run(go())["id"].tolist() == ["p1"]


def test_repr_hides_the_key():
    lc = LlamaCloud(api_key="secret-key-abcd", base_url="http://h")
    assert "secret" not in repr(lc) and "abcd" in repr(lc) and "secret" not in repr(lc.config)
    lc.close()


def test_retry_policy_rejects_negative_waits():
    with pytest.raises(ConfigurationError):
        RetryPolicy(backoff_base=-1)


def test_async_copy_keeps_settings_but_not_a_borrowed_http_client():
    import httpx

    from llamaeval import AsyncLlamaCloud, ConfigurationError

    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=[]))
    original = AsyncLlamaCloud(api_key="k", base_url="http://127.0.0.1:9", timeout=3.0, max_retries=5,
                               transport=transport)
    twin = original.copy()
    assert twin is not original
    assert (twin.api_key, twin.base_url, twin.timeout, twin.max_retries, twin.transport) == \
        ("k", "http://127.0.0.1:9", 3.0, 5, transport)
    borrowed = AsyncLlamaCloud(api_key="k", base_url="http://127.0.0.1:9", http_client=httpx.AsyncClient())
    with pytest.raises(ConfigurationError, match="httpx.AsyncClient"):
        borrowed.copy()
