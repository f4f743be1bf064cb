"""Indexing a batch's documents: :class:`Indexing` opens the indexer on first use and turns a
rejected document into a dead letter of its source record. Moved out of
:class:`aitrace.processors.runtime.Runtime`."""

from __future__ import annotations

from typing import Any

import orjson
from aitrace.processors.dlq import DeadLetter, DlqCounter
from aitrace.processors.outputs import Outputs
from aitrace.producers.config import SearchConfig
from aitrace.sinks.documents import Action


class Indexing:
    """The (lazily opened) indexer; ``enabled`` False (``--no-index``) indexes nothing."""

    def __init__(self, search: SearchConfig, enabled: bool, dlq: DlqCounter, outputs: Outputs) -> None:
        self._search = search
        self._enabled = enabled
        self._dlq = dlq
        self._outputs = outputs
        self._indexer: Any = None
        self._client: Any = None
        # id(action) -> (source message, records dead-lettered in that index call); see index()
        self._sources: dict[int, tuple[Any, set[int]]] = {}

    async def indexer(self) -> Any:
        """The bulk indexer, opened on first use; waits (backpressure) while the server is unreachable."""
        if self._indexer is not None:
            return self._indexer
        from aitrace.sinks.index_writer import open_indexer

        self._client, self._indexer = await open_indexer(self._search, on_reject=self.on_reject)
        return self._indexer

    async def index(self, actions: list[Action], sources: dict[int, Any] | None = None) -> None:
        """Index ``actions``; ``sources`` maps ``id(action)`` to the message it came from.

        The map holds references (no copies) until the bulk answer, so a rejected document's
        dead letter is its source record: original bytes, topic, partition, offset.
        """
        if not (actions and self._enabled):
            return
        seen: set[int] = set()  # source records already dead-lettered in this call
        refs = {k: (m, seen) for k, m in (sources or {}).items()}
        self._sources.update(refs)
        try:
            await (await self.indexer()).index(actions)
        finally:
            for k in refs:
                self._sources.pop(k, None)

    async def on_reject(self, rejection: Any) -> None:
        # The server refused this document for a reason of its own: keep its source record on the DLQ.
        action = rejection.action
        detail = (
            f"{rejection.status} {rejection.error_type}: {rejection.reason} "
            f"(document {rejection.index}/{action.get('_id', '')})"
        )
        self._dlq.add("index-rejected")
        source = self._sources.get(id(action))
        if source is None:  # not from a record (should not happen): keep the document itself
            doc = orjson.dumps(action, default=str)
            letter = DeadLetter(doc, str(action.get("_id", "")).encode(), "", -1, -1, "index-rejected", detail)
        else:
            message, seen = source
            if id(message) in seen:
                return  # one dead letter per source record, however many of its documents failed
            seen.add(id(message))
            letter = DeadLetter(
                message.value, message.key, message.topic, message.partition, message.offset, "index-rejected", detail
            )
        await self._outputs.send_letters([letter])

    def stats(self) -> dict[str, Any] | None:
        """The indexer's counters, or None before it is opened."""
        return None if self._indexer is None else dict(self._indexer.stats())

    async def close(self) -> None:
        if self._indexer is not None:
            await self._indexer.close()
        if self._client is not None:
            await self._client.close()
