"""Ports and probes of 127.0.0.1 for the embedded stack.

A free port, whether a port is still taken, a Kafka Metadata request and an HTTP ``GET /``:
each asks the way a client would.
"""

from __future__ import annotations

import json
import socket
import struct
import urllib.request
from typing import Any

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port nothing listens on right now (the OS picks it; another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when a listener could bind ``host:port``.

    SO_REUSEADDR mirrors what Tansu (tokio) and osmem-server (Go) set, so sockets left in
    TIME_WAIT by a stopped broker do not count as taken: restart on the same port works.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def kafka_metadata(host: str, port: int, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """Send a Kafka Metadata v0 request over a raw socket; return the advertised brokers.

    A raw request keeps ``aitrace status`` free of librdkafka's start-up cost and its
    connection-refused chatter while a broker is still coming up. Raises OSError on failure.
    """
    client_id = b"aitrace-probe"
    correlation_id = 0x61697472
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 8 <= size <= 64 * 1024 * 1024:
            # Not Kafka (an HTTP server answers "HTTP", read as 1.2 GB): do not try to read it.
            raise ConnectionError(f"not a Kafka response (frame size {size})")
        payload = _recv_exact(sock, size)
    return _parse_metadata_brokers(payload, correlation_id)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed in the middle of a Kafka response")
        chunks += chunk
    return bytes(chunks)


def _parse_metadata_brokers(payload: bytes, correlation_id: int) -> list[tuple[int, str, int]]:
    try:
        return _parse_brokers(payload, correlation_id)
    except (struct.error, UnicodeDecodeError) as exc:
        raise ConnectionError(f"not a Kafka Metadata response ({exc})") from None


def _parse_brokers(payload: bytes, correlation_id: int) -> list[tuple[int, str, int]]:
    (got_id, count) = struct.unpack_from(">ii", payload, 0)
    if got_id != correlation_id:
        raise ConnectionError(f"Kafka response carries correlation id {got_id}, expected {correlation_id}")
    offset, brokers = 8, []
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", payload, offset)
        offset += 6
        host = payload[offset : offset + host_len].decode()
        offset += host_len
        (port,) = struct.unpack_from(">i", payload, offset)
        offset += 4
        brokers.append((node_id, host, port))
    return brokers


def http_info(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """``GET url/`` decoded as JSON (the cluster info of Elasticsearch / OpenSearch APIs)."""
    with urllib.request.urlopen(url.rstrip("/") + "/", timeout=timeout) as resp:
        return json.loads(resp.read().decode() or "{}")
