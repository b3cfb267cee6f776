"""An Apache Kafka broker that only lets authenticated clients in, for the security tests.

It listens for clients on three listeners, each its own port:

- ``SSL``: TLS with mutual authentication (the client shows a certificate the test CA signed);
- ``SASL_PLAINTEXT``: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over TCP;
- ``SASL_SSL``: the same mechanisms inside TLS.

The certificates are made here (a CA, a broker certificate for 127.0.0.1, a client
certificate), as PEM files Kafka reads directly (``ssl.keystore.type = PEM``). Brokers
talk to each other and to the controller on loopback PLAINTEXT, which no test client uses.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from turnout.apache_kafka import ApacheKafkaCluster

USER = "turnout"
LISTENERS = {"SSL": "SSL", "SASL_PLAINTEXT": "SASL_PLAINTEXT", "SASL_SSL": "SASL_SSL"}
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Pki:
    ca: Path
    broker: Path  # key and certificate chain in one PEM, as Kafka's PEM keystore takes it
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _certificate(subject: str, key, issuer_name: x509.Name | None, issuer_key, *, ca: bool = False, server: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """A throwaway CA and the broker's and a client's certificates it signs."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_cert = _certificate("turnout-test-ca", ca_key, None, None, ca=True)
    broker_key, client_key = _key(), _key()
    broker_cert = _certificate("127.0.0.1", broker_key, ca_cert.subject, ca_key, server=True)
    client_cert = _certificate("turnout-client", client_key, ca_cert.subject, ca_key)
    pem = serialization.Encoding.PEM
    pki = Pki(directory / "ca.pem", directory / "broker.pem", directory / "client.pem", directory / "client-key.pem")
    pki.ca.write_bytes(ca_cert.public_bytes(pem))
    pki.broker.write_bytes(_pem_key(broker_key) + broker_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    pki.client_cert.write_bytes(client_cert.public_bytes(pem))
    pki.client_key.write_bytes(_pem_key(client_key))
    return pki


@dataclass(frozen=True)
class Secrets:
    """Credentials of known, random values: the leak scan looks for them afterwards."""

    plain_password: str
    scram_password: str

    @classmethod
    def new(cls) -> Secrets:
        return cls(f"plain-{secrets.token_hex(12)}", f"scram-{secrets.token_hex(12)}")

    def password(self, mechanism: str) -> str:
        return self.plain_password if mechanism == "PLAIN" else self.scram_password


def secured_cluster(directory: Path, pki: Pki, known: Secrets) -> ApacheKafkaCluster:
    """One Apache Kafka node with the three secured listeners (not yet started)."""
    plain = f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{known.plain_password}";'
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    jaas = {
        f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config": plain if mechanism == "PLAIN" else scram
        for listener in ("SASL_PLAINTEXT", "SASL_SSL")
        for mechanism in MECHANISMS
    }
    properties = {
        "sasl.enabled.mechanisms": ",".join(MECHANISMS),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki.broker),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca),
        "listener.name.ssl.ssl.client.auth": "required",
        **jaas,
    }
    return ApacheKafkaCluster(workdir=directory, listeners=LISTENERS, scram_users={USER: known.scram_password}, extra_properties=properties)


def security_env(protocol: str, pki: Pki, known: Secrets, mechanism: str | None = None) -> dict[str, str]:
    """``TURNOUT_KAFKA__SECURITY__*`` for a client on ``protocol`` (and SASL ``mechanism``)."""
    env = {"TURNOUT_KAFKA__SECURITY__PROTOCOL": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        env["TURNOUT_KAFKA__SECURITY__CA_FILE"] = str(pki.ca)
    if protocol == "SSL":
        env |= {"TURNOUT_KAFKA__SECURITY__CERT_FILE": str(pki.client_cert), "TURNOUT_KAFKA__SECURITY__KEY_FILE": str(pki.client_key)}
    if mechanism is not None:
        env |= {
            "TURNOUT_KAFKA__SECURITY__SASL_MECHANISM": mechanism,
            "TURNOUT_KAFKA__SECURITY__USERNAME": USER,
            "TURNOUT_KAFKA__SECURITY__PASSWORD": known.password(mechanism),
        }
    return env
