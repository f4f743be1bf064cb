"""The tables' changelog codec: Faust's JSON, whose decoding never raises.

A table is restored from its changelog topic, which any Kafka client can write to. Faust's ``json``
codec raised on one record that is not JSON (a key or a value of ``b"\\xff"``): its recovery logged
"Error in recovery" and never counted that offset as read, and the worker never became ready again
(/work/rev-ae D7). Here such a key or value decodes as :data:`UNDECODABLE`, a text no key or value
the worker writes can be: a value the pipeline then drops as a shape it never wrote (counted as
``corrupt_state``), a key no chunk names (one for all of them: what was written under it stays one entry).
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

NAME = "aitrace_json"
KEY_NAME = "aitrace_json_key"
UNDECODABLE = "\x00aitrace: undecodable changelog record"


class TolerantJSON(codecs.Codec):
    """JSON as Faust's ``json`` codec writes and reads it; what it cannot read is :data:`UNDECODABLE`."""

    _json = codecs.get_codec("json")

    def _dumps(self, obj: Any) -> bytes:
        return self._json.dumps(obj)

    def _loads(self, s: bytes) -> Any:
        try:
            return self._json.loads(s)
        except Exception:  # not UTF-8, not JSON: whatever a client wrote
            return UNDECODABLE


class TolerantJSONKey(TolerantJSON):
    """:class:`TolerantJSON` for keys: the worker's keys are texts, and a key of another JSON type may not be
    hashable (``{"a": 1}``, ``[[[1]]]``: Faust's store raised on it, halting recovery as a record not JSON did)."""

    def _loads(self, s: bytes) -> Any:
        key = super()._loads(s)
        return key if type(key) is str else UNDECODABLE


codecs.register(NAME, TolerantJSON())
codecs.register(KEY_NAME, TolerantJSONKey())
