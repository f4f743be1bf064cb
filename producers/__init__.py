"""The producer library: what runs in user code.

The client and its events, the exporter and its on-disk spool, redaction, sampling, trace
context, the logging handler and bridges, resource samples, the settings, and the
integrations (torch, lightning, transformers, keras, asgi, wsgi, inference, otel). The
public API is re-exported lazily by the root package :mod:`aitrace` (``aitrace.init``,
``aitrace.torch.watch``, ...); see :mod:`aitrace.producers.client`.
"""
