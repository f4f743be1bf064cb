"""The embedded stack: Tansu + osmem-server on 127.0.0.1, for `aitrace up/down/status`, tests, the demo.

Process management lives in :mod:`aitrace.infra.services` and is re-exported here, so
``from aitrace.infra.stack import TansuProcess, OsmemProcess, free_port`` is the one import.
"""

from __future__ import annotations

from aitrace.infra.services import (
    BinaryNotFound,
    OsmemProcess,
    PortInUse,
    ServiceFailed,
    ServiceProcess,
    StackError,
    TansuProcess,
    find_binary,
    free_port,
    http_info,
    kafka_metadata,
    port_is_free,
    start_service,
)

__all__ = [
    "BinaryNotFound",
    "OsmemProcess",
    "PortInUse",
    "ServiceFailed",
    "ServiceProcess",
    "StackError",
    "TansuProcess",
    "find_binary",
    "free_port",
    "http_info",
    "kafka_metadata",
    "port_is_free",
    "start_service",
]
