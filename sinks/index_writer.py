"""The worker's way into the index: connect, install the templates, open the bulk indexer.

Everything that depends on the configured index prefix happens here and in the indexer, so
the processors, which build their actions under the canonical prefix, never name an index.
"""

from __future__ import annotations

import logging

from aitrace.producers.config import SearchConfig
from aitrace.sinks.es import capabilities_of, connect
from aitrace.sinks.indexer import BulkIndexer, RejectCallback
from aitrace.sinks.templates import install_templates_async
from elasticsearch import AsyncElasticsearch

log = logging.getLogger("aitrace.processors")  # the worker opens the index: its log, as before


async def open_indexer(
    search: SearchConfig, *, on_reject: RejectCallback | None = None
) -> tuple[AsyncElasticsearch, BulkIndexer]:
    """The client (the caller closes it) and an indexer writing under ``search.index_prefix``."""
    # Waits (backing off) while the search server is unreachable: consumption pauses, nothing is dropped.
    client = await connect(search, wait_s=float("inf"))
    # Templates before the first document: a daily index created without them would get dynamic mappings.
    installed = await install_templates_async(client, capabilities_of(client), prefix=search.index_prefix)
    log.info("index templates: %s", ", ".join(installed))

    async def templates_again() -> None:  # a server restarted empty (osmem-server keeps them in memory)
        await install_templates_async(client, capabilities_of(client), prefix=search.index_prefix)

    indexer = BulkIndexer(client, on_reject=on_reject, index_prefix=search.index_prefix, on_reconnect=templates_again)
    return client, indexer
