"""Records and DataFrames: typed columns, extra fields, flattened metadata, retrieval frames."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from llamaeval.client import (
    DataSink,
    DataSource,
    File,
    Pipeline,
    PipelineFile,
    PipelineJob,
    Project,
    RetrievalResult,
    parse_server_timing,
)
from llamaeval.client._records import frame_from_json
from llamaeval.client._retrieval import RESULT_COLUMNS, results_frame

UTC = timezone.utc


def test_record_keeps_typed_fields_and_extra():
    job = PipelineJob.from_json({
        "id": "j1", "pipeline_id": "pl1", "status": "failed", "created_at": "2026-01-01T10:00:00Z",
        "completed_at": "2026-01-01T10:00:02.5+00:00", "error": "no text layer", "num_files": 3})
    assert job.created_at == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert job.duration_s == 2.5
    assert job.error == "no text layer" and job.extra == {"num_files": 3}


def test_naive_datetimes_are_taken_as_utc():
    project = Project.from_json({"id": "p", "created_at": "2026-05-01T12:00:00"})
    assert project.created_at.tzinfo is not None and project.created_at.utcoffset().total_seconds() == 0


def test_list_frame_dtypes():
    frame = frame_from_json(Pipeline, [
        {"id": "a", "name": "one", "project_id": "p", "status": "active", "sync_interval": None,
         "created_at": "2026-01-01T00:00:00Z", "num_files": 2, "retrieval_config": {"k1": 1.2},
         "error": None, "server_flag": True},
        {"id": "b", "name": "two", "project_id": "p", "status": "syncing", "sync_interval": 3600,
         "created_at": "2026-01-02T00:00:00+02:00", "num_files": 0, "retrieval_config": {"k1": 0.9},
         "error": "boom", "server_flag": False},
    ])
    assert str(frame["id"].dtype) == "string"
    assert isinstance(frame["status"].dtype, pd.CategoricalDtype)
    assert list(frame["status"].cat.categories) == ["idle", "syncing", "active", "error"]
    assert str(frame["sync_interval"].dtype) == "Int64" and pd.isna(frame["sync_interval"].iloc[0])
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    assert frame["created_at"].iloc[1] == pd.Timestamp("2026-01-01T22:00:00Z")
    assert frame["retrieval_config"].iloc[1] == {"k1": 0.9}
    assert str(frame["server_flag"].dtype) == "boolean" and frame["error"].tolist()[1] == "boom"


def test_unknown_status_is_kept_as_a_category():
    frame = frame_from_json(PipelineJob, [{"id": "j", "status": "cancelled"}])
    assert frame["status"].iloc[0] == "cancelled"
    assert list(frame["status"].cat.categories) == ["pending", "running", "completed", "failed", "cancelled"]


def test_pipeline_file_metadata_is_flattened_and_extra_timestamps_parsed():
    frame = frame_from_json(PipelineFile, [
        {"file_id": "f1", "name": "a.txt", "status": "completed", "metadata": {"doc_id": "d1", "year": 1990},
         "updated_at": "2026-01-01T00:00:00Z"},
        {"file_id": "f2", "name": "b.txt", "status": "error", "metadata": {"doc_id": "d2"},
         "updated_at": None},
    ])
    assert list(frame.columns[:5]) == ["file_id", "name", "status", "metadata.doc_id", "metadata.year"]
    assert frame["metadata.doc_id"].tolist() == ["d1", "d2"]
    assert str(frame["metadata.year"].dtype) == "Int64" and pd.isna(frame["metadata.year"].iloc[1])
    assert str(frame["updated_at"].dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize("cls", [Project, File, Pipeline, PipelineFile, PipelineJob, DataSource, DataSink])
def test_empty_lists_give_typed_empty_frames_matching_to_frame(cls):
    empty = frame_from_json(cls, [])
    key = "file_id" if cls is PipelineFile else "id"
    one = cls.from_json({key: "x"}).to_frame()
    assert len(empty) == 0 and len(one) == 1
    assert list(one.columns) == list(empty.columns)
    assert [str(t) for t in one.dtypes] == [str(t) for t in empty.dtypes]


def test_record_to_frame_round_trip():
    f = File.from_json({"id": "f1", "name": "a.txt", "file_size": 12, "created_at": "2026-01-01T00:00:00Z",
                        "data_source_id": None})
    frame = f.to_frame()
    assert frame.loc[0, "file_size"] == 12 and frame.loc[0, "name"] == "a.txt"
    assert "data_source_id" in frame.columns


def test_results_frame_columns_and_types():
    frame = results_frame([
        {"text": "alpha", "score": 2.0, "metadata": {"file_id": "f1", "file_name": "1.txt", "chunk_id": "f1:0",
                                                     "chunk_index": 0, "doc_id": 1, "start_char": 0,
                                                     "scores": {"bm25": 3.1, "dense": 0.4}, "lang": "en"}},
        {"text": "beta", "score": 1.0, "metadata": {"file_id": "f2", "file_name": "2.txt", "chunk_id": "f2:3",
                                                    "chunk_index": 3, "start_char": 90,
                                                    "scores": {"bm25": 1.0}}},
    ])
    assert tuple(frame.columns[:8]) == RESULT_COLUMNS
    assert frame["rank"].tolist() == [1, 2] and str(frame["rank"].dtype) == "int64"
    assert frame["doc_id"].iloc[0] == "1" and pd.isna(frame["doc_id"].iloc[1])  # ids are strings; NA when absent
    assert str(frame["chunk_index"].dtype) == "Int64"
    assert frame["scores.bm25"].tolist() == [3.1, 1.0]
    assert frame["scores.dense"].iloc[0] == 0.4 and pd.isna(frame["scores.dense"].iloc[1])
    assert frame["lang"].iloc[0] == "en" and pd.isna(frame["lang"].iloc[1])


def test_empty_results_frame_has_the_columns():
    frame = results_frame([])
    assert tuple(frame.columns) == RESULT_COLUMNS and len(frame) == 0


def test_retrieval_result_frame_is_lazy_and_cached():
    raw = {"results": [{"text": "a", "score": 1.0, "metadata": {"doc_id": "d"}}]}
    result = RetrievalResult(request={"query": "q"}, raw=raw, latency_s=0.01, server_timing={}, status_code=200)
    assert "frame" not in result.__dict__
    assert result.to_frame() is result.frame and len(result) == 1


def test_server_timing_in_seconds():
    header = 'embed;dur=1.5, bm25;dur=0.25;desc="sparse, stemmed", cache;desc=hit, total;dur=3'
    assert parse_server_timing(header) == {"embed": 0.0015, "bm25": 0.00025, "total": 0.003}
    assert parse_server_timing(None) == {} and parse_server_timing("x;dur=abc") == {}


@pytest.mark.parametrize("cls", [Project, File, Pipeline, PipelineFile, PipelineJob, DataSource, DataSink])
def test_every_typed_field_has_a_kind(cls):
    from dataclasses import fields

    assert set(cls._KINDS) == {f.name for f in fields(cls)} - {"extra"}
