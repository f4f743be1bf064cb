"""Index templates (and ILM policy) for the three index families.

Every field :mod:`aitrace.sinks.documents` writes is mapped here with its ECS type
(``aitrace.*`` explicitly), under ``dynamic: false``: a field nobody declared stays
in ``_source`` and never grows the mapping. The one open door is ``labels.*``
(ECS: user keys, keyword values), mapped by a dynamic template and capped by
``index.mapping.total_fields.limit``. Free-form maps (attributes, run config,
inference features, quantiles) live in ``enabled: false`` objects.

Only types both Elasticsearch 8/9 and OpenSearch-API servers know are used
(``text`` where ECS says ``match_only_text``; no ``flattened``), with one
capability-dependent exception: ``error.stack_trace`` is mapped as ECS maps it
(``wildcard`` with a ``text`` multi-field of type ``match_only_text``) where the
server has those types (see :func:`stack_trace_mapping`). Where it has no
``wildcard`` (Elasticsearch < 7.9, OpenSearch < 2.15) it falls back to
``keyword`` (``ignore_above``) with a ``text`` sub-field, so queries on
``error.stack_trace.text`` work on every server.
"""

from __future__ import annotations

import copy
from typing import Any

from aitrace.sinks.documents import FAMILIES
from aitrace.sinks.es import Capabilities

TOTAL_FIELDS_LIMIT = 1000
DEFAULT_RETENTION_DAYS = 30
TEMPLATE_PRIORITY = 200

Mapping = dict[str, Any]

KW: Mapping = {"type": "keyword", "ignore_above": 1024}
TEXT: Mapping = {"type": "text"}
TEXT_KW: Mapping = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}}
KW_TEXT: Mapping = {"type": "keyword", "ignore_above": 1024, "fields": {"text": {"type": "text"}}}
LONG: Mapping = {"type": "long"}
INT: Mapping = {"type": "integer"}
DOUBLE: Mapping = {"type": "double"}
DATE: Mapping = {"type": "date"}
BOOL: Mapping = {"type": "boolean"}
SOURCE_ONLY: Mapping = {"type": "object", "enabled": False}
# numbers kept for reading, never indexed (alert evidence windows)
STORED_DOUBLE: Mapping = {"type": "double", "index": False, "doc_values": False}


def _obj(**props: Mapping) -> Mapping:
    return {"properties": props}


# ECS 8: error.stack_trace is wildcard, multi-field text is match_only_text.
ECS_STACK_TRACE: Mapping = {"type": "wildcard", "fields": {"text": {"type": "match_only_text"}}}


def stack_trace_mapping(capabilities: Capabilities | None = None) -> Mapping:
    """``error.stack_trace`` as ECS maps it, as far as the server allows; None means ECS as is.

    - ``wildcard`` + ``match_only_text`` (ECS): Elasticsearch 7.14+.
    - ``wildcard`` + ``text``: OpenSearch 2.15+ (no ``match_only_text`` there; osmem-server
      reports OpenSearch 3.x and takes this branch).
    - fallback ``keyword`` (``ignore_above``) + ``text``: servers without ``wildcard``. A trace
      longer than ``ignore_above`` is then only searchable through ``error.stack_trace.text``
      (infix ``*Error*`` queries on the whole trace need ``wildcard``).
    """
    if capabilities is None:
        return copy.deepcopy(ECS_STACK_TRACE)
    text: Mapping = {"type": "match_only_text" if capabilities.has_match_only_text else "text"}
    if capabilities.has_wildcard:
        return {"type": "wildcard", "fields": {"text": text}}
    # Fallback (no wildcard type): keyword keeps exact/prefix search for short traces.
    return {**KW, "fields": {"text": text}}


def _common(capabilities: Capabilities | None = None) -> Mapping:
    """ECS fields shared by events, traces and alerts."""
    return {
        "@timestamp": DATE,
        "message": TEXT,
        "event": _obj(
            id=KW,
            kind=KW,
            category=KW,
            dataset=KW,
            duration=LONG,
            outcome=KW,
            severity=LONG,
            start=DATE,
            end=DATE,
        ),
        "trace": _obj(id=KW),
        "span": _obj(id=KW),
        "parent": _obj(id=KW),
        "service": _obj(name=KW, version=KW, environment=KW),
        "host": _obj(name=KW),
        "process": _obj(pid=LONG),
        "log": _obj(level=KW, logger=KW),
        "error": _obj(type=KW, message=TEXT, stack_trace=stack_trace_mapping(capabilities)),
        "labels": {"type": "object", "dynamic": True},
    }


def _events_aitrace() -> Mapping:
    return {
        "kind": KW,
        "run_id": KW,
        "attributes": SOURCE_ONLY,
        "metric": _obj(
            name=KW,
            value=DOUBLE,
            nonfinite=KW,
            step=LONG,
            epoch=INT,
            split=KW,
            rollup=BOOL,
            count=LONG,
            nonfinite_count=LONG,  # rollups: NaN/Inf points of the window (count is the finite ones)
            min=DOUBLE,
            max=DOUBLE,
            first=DOUBLE,
            last=DOUBLE,
            first_step=LONG,
            last_step=LONG,
            window_us=LONG,
        ),
        "run": _obj(status=KW, seed=LONG, code_version=KW, config=SOURCE_ONLY, library_versions=SOURCE_ONLY),
        "data": _obj(
            stage=KW,
            dataset=KW,
            batch=KW,
            row_count=LONG,
            rows_dropped=LONG,
            label=KW,
            ingest_delay_ms=DOUBLE,
            features={
                "type": "nested",
                "properties": {
                    "name": KW,
                    "dtype": KW,
                    "count": LONG,
                    "missing": LONG,
                    "mean": DOUBLE,
                    "variance": DOUBLE,
                    "min": DOUBLE,
                    "max": DOUBLE,
                    "detail": SOURCE_ONLY,
                },
            },
            class_counts={"type": "nested", "properties": {"name": KW, "count": LONG}},
        ),
        "inference": _obj(
            request_id=KW,
            model=KW,
            model_version=KW,
            feature_version=KW,
            latency_ms=DOUBLE,
            status=KW,
            prediction=KW,
            confidence=DOUBLE,
            inputs_summary={"type": "keyword", "index": False, "doc_values": False},
            features=SOURCE_ONLY,
            categorical_features=SOURCE_ONLY,
        ),
        # label of a GroundTruth event; the processors add the joined prediction to it
        "ground_truth": _obj(
            label=KW,
            prediction=KW,
            correct=BOOL,
            prediction_event_id=KW,
            prediction_trace_id=KW,
            delay_ms=DOUBLE,
        ),
        "resources": _obj(
            cpu_percent=DOUBLE,
            memory_rss_bytes=LONG,
            memory_percent=DOUBLE,
            disk_read_bytes_per_s=DOUBLE,
            disk_write_bytes_per_s=DOUBLE,
            host_cpu_percent=DOUBLE,
            host_memory_used_bytes=LONG,
            host_memory_total_bytes=LONG,
            host_memory_percent=DOUBLE,
            host_disk_read_bytes_per_s=DOUBLE,
            host_disk_write_bytes_per_s=DOUBLE,
            host_net_sent_bytes_per_s=DOUBLE,
            host_net_recv_bytes_per_s=DOUBLE,
            gpu=_obj(
                index=INT,
                name=KW,
                utilization_percent=DOUBLE,
                memory_used_bytes=LONG,
                memory_total_bytes=LONG,
                temperature_c=DOUBLE,
                power_w=DOUBLE,
            ),
            gpu_memory_used_bytes=LONG,
            gpu_utilization_max=DOUBLE,
        ),
        "span": _obj(name=KW, kind=KW, status=KW, start=DATE, attributes=SOURCE_ONLY),
    }


def _traces_aitrace() -> Mapping:
    return {
        "kind": KW,
        "run_id": KW,
        "trace": _obj(
            root_name=KW,
            services=KW,
            span_count=INT,
            event_count=INT,
            complete=BOOL,
            has_error=BOOL,
            first_error=TEXT_KW,
            duration_us=LONG,
            critical_path=KW,
            span_names=KW,
            spans=SOURCE_ONLY,
        ),
    }


def _alerts_aitrace() -> Mapping:
    return {
        "kind": KW,
        "run_id": KW,
        "alert": _obj(
            id=KW,
            version=INT,
            kind=KW,
            detector=KW,
            severity=KW,
            state=KW,
            title=KW_TEXT,
            series=KW,
            model=KW,
            feature=KW,
            step=LONG,
            last_seen=DATE,
            score=DOUBLE,
            statistic=DOUBLE,
            threshold=DOUBLE,
            pvalue=DOUBLE,
            evidence=STORED_DOUBLE,
            details=SOURCE_ONLY,
        ),
    }


_AITRACE = {"events": _events_aitrace, "traces": _traces_aitrace, "alerts": _alerts_aitrace}


def mappings(family: str, capabilities: Capabilities | None = None) -> Mapping:
    """The ``mappings`` body of one family's template (for the server of ``capabilities``; None: ECS as is)."""
    if family not in _AITRACE:
        raise ValueError(f"unknown index family {family!r}; expected one of {FAMILIES}")
    props = _common(capabilities)
    props["aitrace"] = _obj(**_AITRACE[family]())
    return {
        "dynamic": False,
        "date_detection": False,
        "dynamic_templates": [
            {
                "labels_as_keyword": {
                    "path_match": "labels.*",
                    "match_mapping_type": "string",
                    "mapping": KW,
                }
            }
        ],
        "properties": copy.deepcopy(props),
    }


def index_template(
    family: str, *, prefix: str = "aitrace", ilm_policy: str | None = None, capabilities: Capabilities | None = None
) -> Mapping:
    """Composable index template body for ``<prefix>-<family>-*``."""
    settings: Mapping = {"number_of_shards": 1, "index.mapping.total_fields.limit": TOTAL_FIELDS_LIMIT}
    if ilm_policy:
        settings["index.lifecycle.name"] = ilm_policy
    return {
        "index_patterns": [f"{prefix}-{family}-*"],
        "priority": TEMPLATE_PRIORITY,
        "template": {"settings": settings, "mappings": mappings(family, capabilities)},
        "_meta": {"managed_by": "aitrace", "family": family},
    }


def ilm_policy_body(retention_days: int = DEFAULT_RETENTION_DAYS) -> Mapping:
    """Delete daily indices after ``retention_days`` (no rollover: indices are daily already)."""
    return {
        "policy": {
            "phases": {"hot": {"actions": {}}, "delete": {"min_age": f"{retention_days}d", "actions": {"delete": {}}}}
        }
    }


def field_types(family: str, capabilities: Capabilities | None = None) -> dict[str, str]:
    """Flattened ``path -> type`` of a family's mapping (``object`` for objects, incl. source-only ones)."""
    out: dict[str, str] = {}

    def walk(props: Mapping, path: str) -> None:
        for name, spec in props.items():
            full = f"{path}{name}"
            out[full] = spec.get("type", "object")
            for sub, sub_spec in spec.get("fields", {}).items():
                out[f"{full}.{sub}"] = sub_spec["type"]
            if "properties" in spec:
                walk(spec["properties"], full + ".")

    walk(mappings(family, capabilities)["properties"], "")
    return out


def template_name(prefix: str, family: str) -> str:
    return f"{prefix}-{family}"


def policy_name(prefix: str) -> str:
    return f"{prefix}-retention"


def _template_kwargs(family: str, prefix: str, policy: str | None, capabilities: Capabilities) -> Mapping:
    """The template body as the client's keyword arguments (``_meta`` is ``meta`` there)."""
    body = index_template(family, prefix=prefix, ilm_policy=policy, capabilities=capabilities)
    body["meta"] = body.pop("_meta")
    return body


def install_templates(
    client: Any,
    capabilities: Capabilities,
    *,
    prefix: str = "aitrace",
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> list[str]:
    """Install the ILM policy (only where the server has ILM) and the three templates.

    ``client`` is a sync ``Elasticsearch`` from :func:`aitrace.sinks.es.make_sync_client`.
    Idempotent: re-running overwrites with the same bodies. Returns what was installed.
    """
    installed: list[str] = []
    policy = None
    if capabilities.has_ilm:
        policy = policy_name(prefix)
        client.ilm.put_lifecycle(name=policy, policy=ilm_policy_body(retention_days)["policy"])
        installed.append(f"ilm policy {policy}")
    for family in FAMILIES:
        name = template_name(prefix, family)
        client.indices.put_index_template(name=name, **_template_kwargs(family, prefix, policy, capabilities))
        installed.append(f"index template {name}")
    return installed


async def install_templates_async(
    client: Any,
    capabilities: Capabilities,
    *,
    prefix: str = "aitrace",
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> list[str]:
    """Async twin of :func:`install_templates` (a worker can make sure templates exist at start)."""
    installed: list[str] = []
    policy = None
    if capabilities.has_ilm:
        policy = policy_name(prefix)
        await client.ilm.put_lifecycle(name=policy, policy=ilm_policy_body(retention_days)["policy"])
        installed.append(f"ilm policy {policy}")
    for family in FAMILIES:
        name = template_name(prefix, family)
        await client.indices.put_index_template(name=name, **_template_kwargs(family, prefix, policy, capabilities))
        installed.append(f"index template {name}")
    return installed
