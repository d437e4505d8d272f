"""The public surface is curated: pin it, and check that every name resolves."""

import subprocess
import sys

import llamaeval

EXPECTED = {
    "__version__",
    "LlamaEvalError", "ConfigurationError", "APIError", "BadRequestError",
    "AuthenticationError", "NotFoundError", "RateLimitError", "ServerError",
    "APIConnectionError", "APITimeoutError", "QuerySetError", "AlignmentError",
    "SyncError", "EmptyPipelineError", "EvaluationError",
    "LlamaCloud", "AsyncLlamaCloud",
    "QuerySet", "DocumentMapping", "load_queryset", "ingest",
    "benchmark", "BenchmarkConfig", "BenchmarkRun",
    "EmbeddedServer",
    "metrics", "plots", "widgets", "report",
}


def test_all_is_pinned():
    assert set(llamaeval.__all__) == EXPECTED


def test_every_public_name_resolves():
    missing = [name for name in llamaeval.__all__ if getattr(llamaeval, name, None) is None]
    assert missing == []


def test_errors_share_one_root():
    for name in llamaeval.__all__:
        obj = getattr(llamaeval, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, llamaeval.LlamaEvalError), name


def test_import_does_no_heavy_work():
    """`import llamaeval` must not pull pandas, numpy, httpx or the server stack."""
    code = (
        "import sys, llamaeval; "
        "heavy = [m for m in ('pandas', 'numpy', 'httpx', 'fastapi', 'onnxruntime', 'ranx') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
