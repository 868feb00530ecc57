"""The local CA: what its certificates say, and which files ensure_local_pki keeps."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kit.security.pki import (
    create_ca,
    ensure_local_pki,
    load_ca,
    load_certificate,
    reissue,
    write_workload,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_ca_and_a_workload_certificate_say_what_they_must(tmp_path: Path) -> None:
    pki = ensure_local_pki(tmp_path, ["user"])
    ca = load_certificate(pki.ca_file)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert constraints.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert ca.subject == ca.issuer
    assert dt.timedelta(days=364) < ca.not_valid_after_utc - ca.not_valid_before_utc

    cert = load_certificate(pki.files("user")[0])
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://webook/user"]
    assert sans.get_values_for_type(x509.DNSName) == ["user.webook.internal"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=29) < lifetime <= dt.timedelta(days=31)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"


def test_keys_are_private_to_their_owner(tmp_path: Path) -> None:
    pki = ensure_local_pki(tmp_path, ["user", "gateway"])
    assert _mode(pki.ca_key_file) == 0o600
    for name in ("user", "gateway"):
        cert_file, key_file = pki.files(name)
        assert _mode(key_file) == 0o600
        assert _mode(cert_file) == 0o644


def test_a_second_run_reuses_every_valid_file(tmp_path: Path) -> None:
    first = ensure_local_pki(tmp_path, ["user", "gateway"])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    second = ensure_local_pki(tmp_path, ["gateway", "user"])
    assert second == first
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_new_names_are_added_without_touching_the_others(tmp_path: Path) -> None:
    pki = ensure_local_pki(tmp_path, ["user"])
    user = pki.files("user")[0].read_bytes()
    ensure_local_pki(tmp_path, ["user", "search"])
    assert pki.files("user")[0].read_bytes() == user
    load_certificate(pki.files("search")[0]).verify_directly_issued_by(
        load_certificate(pki.ca_file)
    )


def test_expiring_and_foreign_certificates_are_replaced(tmp_path: Path) -> None:
    pki = ensure_local_pki(tmp_path, ["user", "gateway", "search"])
    ca_cert, ca_key = load_ca(pki)
    kept = pki.files("search")[0].read_bytes()
    # "user": from this CA but within a day of expiring.
    old = write_workload(
        *pki.files("user"),
        "user",
        ca_cert,
        ca_key,
        now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30),
    )
    # "gateway": valid, but from another CA.
    other_cert, other_key = create_ca()
    foreign = write_workload(*pki.files("gateway"), "gateway", other_cert, other_key)

    ensure_local_pki(tmp_path, ["user", "gateway", "search"])

    ca = load_certificate(pki.ca_file)
    assert ca.serial_number == ca_cert.serial_number
    for name, replaced in (("user", old), ("gateway", foreign)):
        cert = load_certificate(pki.files(name)[0])
        assert cert.serial_number != replaced.serial_number
        cert.verify_directly_issued_by(ca)
        assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=29)
    assert pki.files("search")[0].read_bytes() == kept


def test_a_corrupt_or_mismatched_pair_is_replaced(tmp_path: Path) -> None:
    pki = ensure_local_pki(tmp_path, ["user", "gateway"])
    pki.files("user")[0].write_text("not a certificate")
    # gateway: a valid EC key, but not the one its certificate names.
    gateway_key = pki.files("gateway")[1]
    gateway_cert = load_certificate(pki.files("gateway")[0])
    gateway_key.write_bytes(pki.ca_key_file.read_bytes())
    ensure_local_pki(tmp_path, ["user", "gateway"])
    load_certificate(pki.files("user")[0])
    assert load_certificate(pki.files("gateway")[0]).serial_number != gateway_cert.serial_number


def test_an_expiring_ca_is_replaced_and_reissues_everything(tmp_path: Path) -> None:
    ensure_local_pki(tmp_path, ["user"], ca_validity=dt.timedelta(hours=12))
    pki = ensure_local_pki(tmp_path, ["user"])
    ca = load_certificate(pki.ca_file)
    assert ca.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=300)
    load_certificate(pki.files("user")[0]).verify_directly_issued_by(ca)


def test_reissue_rotates_one_certificate_in_place(tmp_path: Path) -> None:
    pki = ensure_local_pki(tmp_path, ["user", "gateway"])
    before = load_certificate(pki.files("user")[0])
    gateway = pki.files("gateway")[0].read_bytes()
    key_before = pki.files("user")[1].read_bytes()
    rotated = reissue(pki, "user")
    assert rotated.serial_number != before.serial_number
    assert load_certificate(pki.files("user")[0]) == rotated
    assert pki.files("user")[1].read_bytes() != key_before
    assert _mode(pki.files("user")[1]) == 0o600
    assert pki.files("gateway")[0].read_bytes() == gateway
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ca-key.pem",
        "ca.pem",
        "gateway-key.pem",
        "gateway.pem",
        "user-key.pem",
        "user.pem",
    ], "no temporary file is left behind"


def test_names_must_be_workload_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a workload name"):
        ensure_local_pki(tmp_path, ["User_Service"])
