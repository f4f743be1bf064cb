"""The loguru sink and the structlog processor against a real Tansu: records, context, no raise, no loop."""

from __future__ import annotations

import importlib
import io
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aitrace
import pytest
from aitrace.infra.stack import TansuProcess
from aitrace.producers import logging_bridges
from test_producer_support import consume

loguru = pytest.importorskip("loguru")
structlog = pytest.importorskip("structlog")


@pytest.fixture
def client(kafka: TansuProcess, tmp_path: Path, unique_name: Callable[[str], str]) -> Iterator[aitrace.Client]:
    made = aitrace.init(
        service="etl", kafka_bootstrap=kafka.bootstrap, topic_prefix=unique_name("p"), spool_dir=str(tmp_path / "s")
    )
    yield made
    made.close(timeout=5)


@pytest.fixture
def logger() -> Iterator[Any]:
    """loguru's logger with its default stderr sink removed; every sink added in the test removed after."""
    loguru.logger.remove()
    yield loguru.logger
    loguru.logger.remove()
    loguru.logger.configure(patcher=None)


def _log_events(records: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [e for _, batch in records for e in batch["events"] if e["payload"][0] == "aitrace.LogRecord"]


def _logs(client: aitrace.Client, n: int) -> dict[str, dict[str, Any]]:
    """The first ``n`` log events by message (waiting for logs, not for any event: spans come too)."""
    kafka = client.settings.kafka
    records = consume(kafka.kafka_bootstrap, kafka.topic_prefix, lambda r: len(_log_events(r)) >= n)
    return {e["payload"][1]["message"]: e for e in _log_events(records)}


def test_loguru_records_carry_attributes_exceptions_and_the_current_span(client: aitrace.Client, logger: Any) -> None:
    logger.add(logging_bridges.loguru_sink(client), level="DEBUG")
    with client.span("clean") as span:
        logger.bind(table="orders").warning("dropped {} rows", 12)
    try:
        {}["missing"]
    except KeyError:
        logger.exception("lookup failed")
    logger.success("done")
    assert client.flush(timeout=30)
    logs = _logs(client, 3)
    dropped = logs["dropped 12 rows"]
    assert (dropped["trace_id"], dropped["span_id"]) == (span.trace_id, span.span_id)
    payload = dropped["payload"][1]
    assert payload["level"] == "warning" and payload["attributes"]["table"] == "orders"
    assert payload["logger"] == __name__ and payload["attributes"]["function"].startswith("test_loguru")
    failed = logs["lookup failed"]["payload"][1]
    assert failed["level"] == "error" and failed["error_type"] == "KeyError" and "missing" in failed["stack_trace"]
    assert logs["done"]["payload"][1]["level"] == "info"


def test_an_enqueued_loguru_sink_keeps_the_context_through_the_patcher(client: aitrace.Client, logger: Any) -> None:
    logger.configure(patcher=logging_bridges.loguru_patcher)
    logger.add(logging_bridges.loguru_sink(client), enqueue=True)
    with client.span("batch") as span:
        logger.info("queued record")
    logger.complete()
    assert client.flush(timeout=30)
    event = _logs(client, 1)["queued record"]
    assert (event["trace_id"], event["span_id"]) == (span.trace_id, span.span_id)
    assert "aitrace_trace_id" not in event["payload"][1]["attributes"]


def test_structlog_events_are_sent_and_passed_on(client: aitrace.Client) -> None:
    out = io.StringIO()
    processor = logging_bridges.structlog_processor(client, add_ids=True)
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[structlog.processors.add_log_level, processor, structlog.processors.KeyValueRenderer()],
    )
    with client.span("score") as span:
        log.info("scored", rows=3, level_hint="x")
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        log.exception("score failed")
    assert client.flush(timeout=30)
    logs = _logs(client, 2)
    scored = logs["scored"]
    assert (scored["trace_id"], scored["span_id"]) == (span.trace_id, span.span_id)
    assert scored["payload"][1]["level"] == "info" and scored["payload"][1]["attributes"]["rows"] == "3"
    failed = logs["score failed"]["payload"][1]
    assert failed["level"] == "error" and failed["error_type"] == "ZeroDivisionError"
    rendered = out.getvalue()
    assert "rows=3" in rendered and f"trace_id='{span.trace_id}'" in rendered  # the chain went on


class _Intercept(logging.Handler):
    """The usual stdlib -> loguru bridge: with it, aitrace's own warnings reach loguru's sinks."""

    def emit(self, record: logging.LogRecord) -> None:
        patched = loguru.logger.patch(lambda r: r.update(name=record.name))
        patched.log(record.levelname, record.getMessage())


def test_a_closed_or_broken_client_never_raises_and_aitrace_logs_never_loop(
    client: aitrace.Client, logger: Any
) -> None:
    sink = logging_bridges.loguru_sink(client)
    calls: list[str] = []
    logger.add(lambda m: calls.append(m.record["message"]))
    logger.add(sink, catch=False)  # catch=False: an exception from the sink would reach the caller
    intercept = _Intercept()
    aitrace_logger = logging.getLogger("aitrace")
    aitrace_logger.addHandler(intercept)
    try:
        client.close()
        logger.error("after close")  # client.log counts it and warns on the aitrace logger -> loguru -> sink
        logging.getLogger("aitrace.client").warning("from inside aitrace")
    finally:
        aitrace_logger.removeHandler(intercept)
    assert client.stats()["dropped_closed"] == 1  # the warning did not come back as a second record
    assert any("dropped_closed" in c for c in calls) and "from inside aitrace" in calls

    class Broken:
        def log(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("pipeline down")

    broken_sink = logging_bridges.loguru_sink(Broken())
    logger.add(broken_sink, catch=False)
    logger.error("to a broken client")
    processor = logging_bridges.structlog_processor(Broken())
    assert processor(None, "info", {"event": "x"}) == {"event": "x"}
    assert broken_sink.errors == 1 and processor.errors == 1


@pytest.mark.parametrize(("module", "factory"), [("loguru", "loguru_sink"), ("structlog", "structlog_processor")])
def test_a_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch, module: str, factory: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"pip install 'aitrace\[{module}\]'"):
        getattr(importlib.reload(logging_bridges), factory)()


def test_attributes_named_like_client_logs_parameters_keep_their_record(client: aitrace.Client, logger: Any) -> None:
    """An attribute named ``message`` or ``self`` went to ``client.log`` as a keyword of its own parameter (TypeError):
    structlog with ``EventRenamer("message")`` before the processor, ``logger.bind(message=...)`` in loguru or
    ``extra={"self": ...}`` in the stdlib lost every such record (counted in ``.errors``, nothing sent)."""
    processor = logging_bridges.structlog_processor(client)
    log = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[structlog.processors.EventRenamer("message"), processor, structlog.processors.JSONRenderer()],
    )
    log.info("renamed", user="bob")
    sink = logging_bridges.loguru_sink(client)
    logger.add(sink, level="DEBUG")
    logger.bind(message="bound text", self="me").info("bound")
    stdlib = logging.getLogger("test.reserved")
    handler = aitrace.AitraceHandler(client)
    stdlib.addHandler(handler)
    try:
        stdlib.warning("plain", extra={"self": "me"})
    finally:
        stdlib.removeHandler(handler)
    assert client.flush(timeout=30)
    logs = _logs(client, 3)
    assert processor.errors == sink.errors == 0
    assert logs["renamed"]["payload"][1]["attributes"]["user"] == "bob"
    assert logs["bound"]["payload"][1]["attributes"]["extra.message"] == "bound text"
    assert logs["plain"]["payload"][1]["attributes"]["extra.self"] == "me"


def test_a_colour_rendered_structlog_line_through_stdlib_logging_keeps_no_secret(client: aitrace.Client) -> None:
    """structlog's ConsoleRenderer(colors=True) into stdlib logging wraps each key in a terminal's colour codes
    (``\\x1b[36mpassword\\x1b[0m=``): the line a terminal shows as ``password=...`` reached the index in clear."""
    name = "test.colours"
    std = logging.getLogger(name)
    std.addHandler(aitrace.AitraceHandler(client))
    std.propagate = False
    log = structlog.wrap_logger(
        std, processors=[structlog.dev.ConsoleRenderer(colors=True)], wrapper_class=structlog.stdlib.BoundLogger
    )
    try:
        log.warning("db connect", password="Hunter2Secret", host="db")
        log.warning("login ok", token=None, user="bob")
        assert client.flush(timeout=30)
        messages = list(_logs(client, 2))
    finally:
        std.handlers.clear()
    connect = next(m for m in messages if "db connect" in m)
    assert "Hunter2Secret" not in connect and "host=db" in connect  # sent as a terminal shows it, redacted
    kept = next(m for m in messages if "login ok" in m)
    assert "\x1b[" in kept and "None" in kept and "bob" in kept  # what a plain line keeps is kept, coloured
