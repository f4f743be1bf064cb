"""The Kafka TLS/SASL settings, as Faust credentials for the worker's app.

:meth:`aitrace.producers.config.KafkaConfig.kafka_config` hands ``security.protocol``, ``sasl.*`` and
``ssl.ca.location`` to confluent-kafka (the producer, the worker's admin client). Faust talks
to the broker through aiokafka, which takes the same settings as a credentials object; without
it the worker would connect in plaintext to a broker the rest of aitrace reaches over TLS/SASL.
Same settings, same meaning: the protocol decides (librdkafka's rule), and the CA file is the
one ``ssl.ca.location`` names (the system's CAs when unset).
"""

from __future__ import annotations

import ssl

import faust
from aitrace.producers.config import KafkaConfig
from faust.types.auth import CredentialsT

# Mechanisms that authenticate with sasl.username / sasl.password: all that the settings
# can express (GSSAPI needs a Kerberos setup and OAUTHBEARER a token callback).
_PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def broker_credentials(kafka: KafkaConfig) -> CredentialsT | None:
    """Faust ``broker_credentials`` for ``kafka``; None for a plaintext broker.

    Raises ValueError, naming the setting, for a protocol or mechanism the worker cannot
    use and for a CA file that cannot be loaded, so a misconfiguration stops the worker at
    start instead of surfacing as a connection that never comes up.
    """
    protocol = (kafka.kafka_security_protocol or "PLAINTEXT").upper()
    if protocol not in _PROTOCOLS:
        raise ValueError(f"AITRACE_KAFKA_SECURITY_PROTOCOL={protocol!r}: expected one of {', '.join(_PROTOCOLS)}")
    if protocol == "PLAINTEXT":
        return None
    context = _ssl_context(kafka.kafka_ssl_ca_location) if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    mechanism = (kafka.kafka_sasl_mechanism or "").upper()
    if mechanism not in _PASSWORD_MECHANISMS:
        raise ValueError(
            f"AITRACE_KAFKA_SASL_MECHANISM={kafka.kafka_sasl_mechanism!r}: the worker supports "
            f"{', '.join(_PASSWORD_MECHANISMS)} with {protocol}"
        )
    return faust.SASLCredentials(
        username=kafka.kafka_sasl_username,
        password=kafka.kafka_sasl_password,
        mechanism=mechanism,
        ssl_context=context,
    )


def _ssl_context(ca_location: str | None) -> ssl.SSLContext:
    """A verifying client context trusting ``ca_location`` (a PEM file), or the system's CAs."""
    try:
        return ssl.create_default_context(cafile=ca_location or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"AITRACE_KAFKA_SSL_CA_LOCATION={ca_location!r}: cannot load the CA file: {exc}") from exc
