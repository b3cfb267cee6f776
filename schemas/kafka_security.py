"""``[kafka.security]``: how every Turnout client authenticates to the brokers.

One section serves the router (faust and aiokafka), the workers, the sink, the SDK,
the gateway and the admin commands, so a cluster that requires TLS or SASL needs it
written once. The names follow Kafka's own client settings (``security.protocol``,
``sasl.mechanism``, ``ssl.ca.location``) so a Kafka engineer recognises them:

    [kafka.security]
    protocol = "SASL_SSL"
    sasl_mechanism = "SCRAM-SHA-512"
    username = "turnout-router"
    password = "…"                 # or TURNOUT_KAFKA__SECURITY__PASSWORD
    ca_file = "/etc/kafka/ca.pem"

The password is a secret: it never appears in a ``repr``, a log line or an error.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from .section import Section

SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurity(Section):
    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka's security.protocol: TLS (SSL), SASL, both, or neither"
    )
    sasl_mechanism: SaslMechanism | None = Field(default=None, description="required with SASL_PLAINTEXT and SASL_SSL")
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = Field(default=None, description="PEM of the CA that signed the brokers' certificates; unset: the system's CAs")
    cert_file: Path | None = Field(default=None, description="client certificate (PEM) for brokers that require mutual TLS")
    key_file: Path | None = Field(default=None, description="the client certificate's private key (PEM)")
    check_hostname: bool = Field(default=True, description="verify that a broker's certificate names the host connected to")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.uses_sasl and (self.sasl_mechanism is None or not self.username or self.password is None):
            missing = [name for name, value in (("sasl_mechanism", self.sasl_mechanism), ("username", self.username), ("password", self.password)) if not value]
            raise ValueError(f"protocol {self.protocol} needs {', '.join(missing)}")
        if not self.uses_sasl and (self.sasl_mechanism or self.username or self.password):
            raise ValueError(f"sasl_mechanism, username and password need protocol SASL_PLAINTEXT or SASL_SSL, not {self.protocol}")
        if not self.uses_tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError(f"ca_file, cert_file and key_file need protocol SSL or SASL_SSL, not {self.protocol}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: a client certificate needs its key")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no file at {path}")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for every connection, or None without TLS."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        context.check_hostname = self.check_hostname
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def aiokafka_options(self) -> dict[str, Any]:
        """The options aiokafka's producers, consumers and admin clients take for it."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            assert self.password is not None
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password.get_secret_value(),
            }
        return options
