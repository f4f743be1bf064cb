"""``aitrace worker`` whose consumer fetches the records of one events partition but never delivers them.

For ``test_faults``: it stands for every path by which Faust can leave fetched records
unprocessed, with the fetch position past them and nothing left to notice (a stalled partition).
From the first record of topic ``UNDELIVERED_TOPIC`` on (or, with ``UNDELIVERED_AFTER=k``,
once k of them were delivered), the records of that record's partition are dropped until
something seeks the partition (which reads them again). Run as
``python tests/_undelivering_worker.py worker ...``: the CLI's own arguments follow.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from faust.transport.consumer import Consumer

_getmany, _seek = Consumer.getmany, Consumer.seek
_dropping: set[Any] = set()  # the partition, once its first record came
_healed: set[Any] = set()
_delivered: dict[Any, int] = {}


async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
    after = int(os.environ.get("UNDELIVERED_AFTER", "0"))
    async for tp, message in _getmany(self, timeout):
        if tp.topic == os.environ["UNDELIVERED_TOPIC"] and not _healed and _dropping <= {tp}:
            if _delivered.setdefault(tp, 0) < after and not _dropping:
                _delivered[tp] += 1
                yield tp, message
                continue
            if not _dropping:
                print(f"[undelivering] dropping {tp.topic}[{tp.partition}] from offset {message.offset}", flush=True)
            _dropping.add(tp)
            continue
        yield tp, message


async def seek(self: Any, tp: Any, offset: int) -> None:
    if tp in _dropping:
        print(f"[undelivering] {tp.topic}[{tp.partition}] sought to {offset}: delivering again", flush=True)
        _dropping.discard(tp)
        _healed.add(tp)
    await _seek(self, tp, offset)


Consumer.getmany, Consumer.seek = getmany, seek  # type: ignore[method-assign]

if __name__ == "__main__":
    from aitrace.infra.cli import main

    sys.exit(main(sys.argv[1:]))
