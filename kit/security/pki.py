"""A small local certificate authority for workload certificates (EC P-256, SHA-256).

Production certificates come from the platform's CA (cert-manager, SPIRE, ...); this module
makes the same kind of certificates for the local stack, the tests and the benchmarks: one
CA, and per workload a certificate naming it twice (URI SAN :func:`spiffe_id`, DNS SAN
:func:`dns_name`) that serves both as server and as client certificate.

:func:`ensure_local_pki` keeps a directory of PEM files and reuses what is still good, so a
restarted stack keeps its CA and certificates; :func:`reissue` rotates one workload's
certificate in place. Every file is written atomically (temporary file, then rename), keys
with mode 0600, so a process reloading the files never reads half of one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kit.security.identity import check_name, dns_name, spiffe_id

CA_VALIDITY: Final = dt.timedelta(days=365)
CERT_VALIDITY: Final = dt.timedelta(days=30)
REUSE_MARGIN: Final = dt.timedelta(days=1)
"""A file is reused only while it stays valid for longer than this."""
# Certificates start a little in the past, so that clocks a few minutes apart agree.
_BACKDATE: Final = dt.timedelta(minutes=5)
_CA_NAME: Final = "webook local CA"


@dataclass(frozen=True)
class Pki:
    """Where a local PKI's files are: ``ca.pem``, ``ca-key.pem``, ``<name>.pem``,
    ``<name>-key.pem``."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        """The CA certificate (what every process trusts)."""
        return self.directory / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        """The CA's private key (only the PKI itself reads it)."""
        return self.directory / "ca-key.pem"

    def files(self, name: str) -> tuple[Path, Path]:
        """Workload ``name``'s certificate and private key files."""
        check_name(name)
        return self.directory / f"{name}.pem", self.directory / f"{name}-key.pem"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def create_ca(
    *, valid_for: dt.timedelta = CA_VALIDITY, now: dt.datetime | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate (CA:true, pathlen 0, key cert sign) and its key."""
    key = _new_key()
    start = (now or _now()) - _BACKDATE
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _CA_NAME)])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_workload(
    name: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    valid_for: dt.timedelta = CERT_VALIDITY,
    now: dt.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for workload ``name`` signed by the CA, and its new key.

    SANs: URI ``spiffe_id(name)`` and DNS ``dns_name(name)``; extended key usage serverAuth
    and clientAuth (every service is both); never valid beyond the CA.
    """
    key = _new_key()
    start = (now or _now()) - _BACKDATE
    end = min(start + valid_for, ca_cert.not_valid_after_utc)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, check_name(name))]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(spiffe_id(name)),
                    x509.DNSName(dns_name(name)),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def cert_pem(cert: x509.Certificate) -> bytes:
    """``cert`` as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename,
    so a reader sees the old file or the new one, never a mix; the file has ``mode``."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_workload(
    cert_file: Path,
    key_file: Path,
    name: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    valid_for: dt.timedelta = CERT_VALIDITY,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Issue a certificate for ``name`` and write it and its key (0600) to the files given.

    The key is written first: a reader that sees the new key with the old certificate finds
    them mismatched and keeps what it had until the certificate follows (see
    :mod:`kit.security.tls`).
    """
    cert, key = issue_workload(name, ca_cert, ca_key, valid_for=valid_for, now=now)
    write_atomically(key_file, key_pem(key), 0o600)
    write_atomically(cert_file, cert_pem(cert))
    return cert


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate in the PEM file ``path``."""
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and key of ``pki``."""
    key = serialization.load_pem_private_key(pki.ca_key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{pki.ca_key_file.name} is not an EC private key")
    return load_certificate(pki.ca_file), key


def _still_good(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > REUSE_MARGIN


def _ca_reusable(
    pki: Pki, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert, key = load_ca(pki)
    except (OSError, ValueError):
        return None
    if cert.public_key() != key.public_key() or not _still_good(cert, now):
        return None
    return cert, key


def _workload_reusable(pki: Pki, name: str, ca_cert: x509.Certificate, now: dt.datetime) -> bool:
    cert_file, key_file = pki.files(name)
    try:
        cert = load_certificate(cert_file)
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca_cert)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return (
        cert.public_key() == key.public_key()
        and _still_good(cert, now)
        and spiffe_id(name) in sans.get_values_for_type(x509.UniformResourceIdentifier)
        and dns_name(name) in sans.get_values_for_type(x509.DNSName)
    )


def ensure_local_pki(
    directory: Path | str,
    names: Iterable[str],
    *,
    ca_validity: dt.timedelta = CA_VALIDITY,
    cert_validity: dt.timedelta = CERT_VALIDITY,
) -> Pki:
    """A CA and a certificate per workload in ``names`` under ``directory``.

    Reuses the CA while it stays valid for more than a day, and each workload certificate
    that does too, was issued by that CA, names its workload and matches its key; anything
    else (missing, expiring, foreign, corrupt) is replaced. A new CA re-issues every
    certificate.
    """
    pki = Pki(Path(directory))
    pki.directory.mkdir(parents=True, exist_ok=True)
    now = _now()
    reusable = _ca_reusable(pki, now)
    if reusable is None:
        ca_cert, ca_key = create_ca(valid_for=ca_validity, now=now)
        write_atomically(pki.ca_key_file, key_pem(ca_key), 0o600)
        write_atomically(pki.ca_file, cert_pem(ca_cert))
    else:
        ca_cert, ca_key = reusable
    for name in dict.fromkeys(names):
        if not _workload_reusable(pki, name, ca_cert, now):
            write_workload(*pki.files(name), name, ca_cert, ca_key, valid_for=cert_validity)
    return pki


def reissue(pki: Pki, name: str, *, valid_for: dt.timedelta = CERT_VALIDITY) -> x509.Certificate:
    """Rotate ``name``'s certificate and key in place (new key, new serial); returns the new
    certificate. Processes using the files pick it up on their next reload."""
    ca_cert, ca_key = load_ca(pki)
    return write_workload(*pki.files(name), name, ca_cert, ca_key, valid_for=valid_for)
