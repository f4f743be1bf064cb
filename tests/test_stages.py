"""``client.stage(...)`` against a real Tansu: one span per stage with its duration and rows in and out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aitrace
import numpy as np
import pandas as pd
import polars as pl
import pytest
from test_producer_support import all_ids, consume


def _spans(client: aitrace.Client, n: int) -> dict[str, dict[str, Any]]:
    """The first ``n`` events read back, which must all be spans, by span name (with their envelope)."""
    assert client.flush(timeout=30)
    records = consume(
        client.settings.kafka.kafka_bootstrap, client.settings.kafka.topic_prefix, lambda r: len(all_ids(r)) >= n, 30.0
    )
    events = [e for _, batch in records for e in batch["events"]]
    assert len(events) == n and all(e["payload"][0] == "aitrace.Span" for e in events)
    return {e["payload"][1]["name"]: {**e["payload"][1], "envelope": e} for e in events}


def test_stages_carry_duration_and_rows_in_and_out(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client(run_id="etl-1")
    raw = pd.DataFrame({"alcohol": [12.8, None, 13.1, 14.0, None], "color": ["red", "red", None, "rose", "red"]})
    with client.stage("clean", dataset="wine", data=raw) as stage:
        clean = stage.output(raw.dropna())
    features = pl.DataFrame({"alcohol": clean["alcohol"].to_numpy()})
    with client.stage("featurize", dataset="wine", data=features, model="v2") as stage:
        time.sleep(0.05)
        stage.rows_out = 3  # a stage may also add rows: no rows_dropped then
    with client.stage("load", data={"alcohol": np.zeros(7)}) as stage:
        pass
    spans = _spans(client, 3)

    assert spans["clean"]["attributes"] == {
        "stage": "clean",
        "dataset": "wine",
        "rows_in": "5",
        "rows_out": "2",
        "rows_dropped": "3",
    }
    assert spans["featurize"]["attributes"] == {
        "stage": "featurize",
        "dataset": "wine",
        "model": "v2",
        "rows_in": "2",
        "rows_out": "3",
    }
    assert spans["featurize"]["duration_us"] >= 50_000 > spans["clean"]["duration_us"]
    assert spans["load"]["attributes"] == {"stage": "load", "rows_in": "7"}  # rows out never given
    assert {s["status"] for s in spans.values()} == {"ok"}
    assert len({s["envelope"]["trace_id"] for s in spans.values()}) == 1  # the run's trace


def test_a_failing_stage_is_an_error_span_and_the_exception_propagates(
    make_client: Callable[..., aitrace.Client],
) -> None:
    client = make_client()
    with pytest.raises(KeyError), client.stage("join", dataset="orders", rows_in=100) as stage:
        stage.rows_out = 40
        raise KeyError("customer_id")
    span = _spans(client, 1)["join"]
    assert span["status"] == "error" and span["error_type"] == "KeyError"
    assert span["attributes"]["rows_dropped"] == "60"


def test_events_inside_a_stage_belong_to_its_span(make_client: Callable[..., aitrace.Client]) -> None:
    client = make_client()
    with client.stage("outer") as outer, client.stage("inner") as inner:
        assert inner.context.parent_span_id == outer.span_id and inner.trace_id == outer.trace_id
    spans = _spans(client, 2)
    assert spans["inner"]["envelope"]["parent_span_id"] == spans["outer"]["envelope"]["span_id"]
