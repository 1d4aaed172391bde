"""Throw-away TLS material for the local broker's SSL and SASL_SSL listeners (openssl).

A self-signed CA, and a broker certificate it signs for 127.0.0.1 and localhost, so that
clients verify the broker exactly as they would a real cluster (`EXPMON_KAFKA_SSL_CAFILE`
points at the CA). Made fresh in the broker's data dir on every start; never reuse it
outside tests and local trials.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from expmon.errors import LocalKafkaError

OPENSSL_HINT = "install openssl, e.g. apt-get install openssl"
VALID_DAYS = "7"
# P-256 keys: generated in milliseconds, understood by Java and Python alike
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True)
class TlsMaterial:
    ca_file: Path  # PEM certificate of the CA that clients trust
    keystore: Path  # PKCS12: the broker's key, its certificate and the CA's
    password: str  # of the keystore and its key (throw-away, like the rest)


def _openssl(args: list[str], cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise LocalKafkaError(f"`openssl` was not found on PATH: {OPENSSL_HINT}")
    try:
        result = subprocess.run(
            [openssl, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalKafkaError(f"openssl {args[0]} failed: {exc}") from exc
    if result.returncode != 0:
        raise LocalKafkaError(
            f"openssl {args[0]} exited with {result.returncode}", result.stderr.strip()
        )


def make_tls_material(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1",)) -> TlsMaterial:
    """A CA and a broker keystore for `hosts` (IP addresses or DNS names) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts]
    (directory / "broker.ext").write_text(
        f"subjectAltName={','.join([*names, 'DNS:localhost'])}\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        ["req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.pem", "-days", VALID_DAYS,
         "-subj", "/CN=expmon local Kafka CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        directory,
    )  # fmt: skip
    _openssl(
        ["req", *EC_KEY, "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=localhost"],
        directory,
    )
    _openssl(
        ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "broker.pem", "-days", VALID_DAYS, "-extfile", "broker.ext"],
        directory,
    )  # fmt: skip
    password = secrets.token_hex(12)
    _openssl(
        ["pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem",
         "-name", "broker", "-out", "broker.p12", "-passout", f"pass:{password}"],
        directory,
    )  # fmt: skip
    return TlsMaterial(directory / "ca.pem", directory / "broker.p12", password)
