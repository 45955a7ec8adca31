"""A throw-away development PKI: root, issuing CA, agency signing certs, TLS, CRL and OCSP material.

Everything is generated at run time with `cryptography`; no key is ever committed. The PKI exists
so that signing, chain validation and revocation checking can be exercised for real (demos, the
sandbox, tests) without a Government CA or VNPT-CA certificate. It is NOT FOR PRODUCTION: the
private keys sit unencrypted on disk (mode 0600) and the PKCS#12 passphrases are written in clear.

Layout written under DIR (also described in DIR/README.txt)::

    pki.json                    manifest (parameters); written last, so it marks a complete PKI
    root-ca.pem                 Dev Root CA — NOT FOR PRODUCTION
    issuing-ca.pem              Dev Issuing CA (signs every other certificate, the CRL)
    chain.pem                   issuing CA + root, the intermediates bundle
    trust/root-ca.pem           trust-anchor folder (give it to TrustStore.from_directory)
    private/root-ca.key         CA keys (0600)
    private/issuing-ca.key
    agencies/<code>/key.pem     agency signing key (RSA-2048, 0600)
    agencies/<code>/cert.pem    agency signing certificate
    agencies/<code>/bundle.p12  key + cert + chain, PKCS#12, encrypted with ...
    agencies/<code>/p12-passphrase.txt   ... this dev-only passphrase (0600)
    tls/server.key, server.pem  TLS server (SAN localhost, 127.0.0.1)
    tls/client.key, client.pem  TLS client (EKU clientAuth)
    crl/issuing-ca.crl          CRL of the issuing CA, DER; crl/issuing-ca.pem the same in PEM
    ocsp/responder.key, .pem    delegated OCSP responder (EKU OCSPSigning, issued by issuing CA)
    ocsp/index.json             serial (hex) -> status, revocation time, reason; read by the
                                test OCSP responder (tests/support/pki_servers.py)
    revoked/key.pem, cert.pem   an agency-like certificate, revoked (cessationOfOperation)
    expired/key.pem, cert.pem   an agency-like certificate whose validity ended 30 days ago

Agency certificates: subject C=VN, O=<name>, CN=<name>, UID=<agency code> (the UID attribute,
OID 0.9.2342.19200300.100.1.1, carries the mã định danh verbatim, e.g. ``000.00.00.H16``);
keyUsage digitalSignature + nonRepudiation (critical); extendedKeyUsage documentSigning
(1.3.6.1.5.5.7.3.36, RFC 9336) + emailProtection, both accepted by `trust.SIGNING_EKUS`;
CRL distribution point and AIA OCSP URL when given.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from .identity import AGENCY_CODE_ATTRIBUTE, agency_code_of  # noqa: F401 - re-exported

DEFAULT_AGENCIES: dict[str, str] = {
    "000.00.00.H16": "UBND tỉnh Đắk Nông",
    "000.00.00.G22": "Văn phòng Chính phủ",
    "000.00.00.H41": "UBND tỉnh Nghệ An",
}
ROOT_CA_NAME = "Dev Root CA — NOT FOR PRODUCTION"
ISSUING_CA_NAME = "Dev Issuing CA — NOT FOR PRODUCTION"
DEV_ORGANIZATION = "edoc-connector development PKI"
DOCUMENT_SIGNING_EKU = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
REVOKED_CODE = "000.00.00.Z98"
EXPIRED_CODE = "000.00.00.Z99"
MANIFEST_FORMAT = 1

_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_OWNED_ENTRIES = (
    "pki.json", "README.txt", "root-ca.pem", "issuing-ca.pem", "chain.pem", "trust", "private",
    "agencies", "tls", "crl", "ocsp", "revoked", "expired",
)


@dataclass(frozen=True)
class Credential:
    """A certificate and where it and its private key live on disk."""

    key_path: Path
    cert_path: Path
    certificate: x509.Certificate

    def private_key(self) -> PrivateKeyTypes:
        """Load the (unencrypted, dev-only) private key."""
        return serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)


@dataclass(frozen=True)
class AgencyCredential(Credential):
    """An agency's signing credential, with its PKCS#12 bundle."""

    code: str
    name: str
    p12_path: Path
    p12_passphrase_path: Path

    def p12_passphrase(self) -> bytes:
        """The dev-only passphrase protecting `bundle.p12`."""
        return self.p12_passphrase_path.read_bytes().strip()


@dataclass(frozen=True)
class DevPki:
    """A development PKI on disk, with its certificates loaded."""

    directory: Path
    root_ca: Credential
    issuing_ca: Credential
    agencies: dict[str, AgencyCredential]
    tls_server: Credential
    tls_client: Credential
    ocsp_responder: Credential
    revoked: Credential
    expired: Credential
    ocsp_url: str | None
    crl_url: str | None
    created: bool  # True when this call generated the PKI, False when it loaded an existing one
    #: why this call replaced a PKI that was already there ("" when there was none, or it was kept)
    regenerated: str = ""
    #: entries of a folder that held no PKI made here, replaced by this call's files (force=True)
    overwritten: tuple[str, ...] = ()

    @property
    def chain_path(self) -> Path:
        return self.directory / "chain.pem"

    @property
    def trust_dir(self) -> Path:
        return self.directory / "trust"

    @property
    def crl_der_path(self) -> Path:
        return self.directory / "crl" / "issuing-ca.crl"

    @property
    def crl_pem_path(self) -> Path:
        return self.directory / "crl" / "issuing-ca.pem"

    @property
    def ocsp_index_path(self) -> Path:
        return self.directory / "ocsp" / "index.json"

    @property
    def intermediates(self) -> list[x509.Certificate]:
        """Certificates a verifier needs between a leaf and the root anchor."""
        return [self.issuing_ca.certificate]

    def crl(self) -> x509.CertificateRevocationList:
        return x509.load_der_x509_crl(self.crl_der_path.read_bytes())


def issue_certificate(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer: x509.Certificate | None,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    ca: bool = False,
    path_length: int | None = None,
    key_usage: Iterable[str] = ("digital_signature",),
    extended_key_usage: Iterable[ObjectIdentifier] = (),
    san: Iterable[x509.GeneralName] = (),
    ocsp_url: str | None = None,
    crl_url: str | None = None,
    extra: Iterable[x509.ExtensionType] = (),
    hash_algorithm: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = None,
) -> x509.Certificate:
    """Issue one X.509 v3 certificate; `issuer=None` makes it self-signed.

    `key_usage` names `x509.KeyUsage` fields to assert (e.g. "key_cert_sign"). Kept public so that
    tests and the sandbox can mint odd certificates (foreign roots, weak keys) the same way.
    """
    issuer_name = subject if issuer is None else issuer.subject
    issuer_public = cast(CertificateIssuerPublicKeyTypes,
                         public_key if issuer is None else issuer.public_key())
    flags = {f: False for f in (
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")}
    for name in key_usage:
        flags[name] = True
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), True)
        .add_extension(x509.KeyUsage(**flags), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), False)
    )
    ekus = list(extended_key_usage)
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    names = list(san)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if ocsp_url:
        access = x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    for ext in extra:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(issuer_key, hash_algorithm or hashes.SHA256())


def agency_name(code: str, name: str) -> x509.Name:
    """The subject used for an agency signing certificate (see the module docstring)."""
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
        x509.NameAttribute(AGENCY_CODE_ATTRIBUTE, code),
    ])


def create_dev_pki(
    directory: Path,
    *,
    agencies: dict[str, str] | None = None,
    now: dt.datetime | None = None,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
    force: bool = False,
) -> DevPki:
    """Create (or load) a development PKI in `directory`.

    Idempotent: when `directory` already holds a complete PKI made with the same agencies and
    URLs, still valid at `now`, with a CRL not past its nextUpdate, it is loaded and returned
    (`created=False`). Otherwise, or with `force=True`, the PKI files are (re)generated; only the
    entries listed in the module docstring are removed first, nothing else in `directory`.
    The result says why an existing PKI was replaced (`regenerated`) and which entries of a
    folder that held no PKI made here were overwritten (`overwritten`); a caller that must not
    write into someone else's folder asks :func:`foreign_content` first (``certs dev-init`` does).
    """
    directory = Path(directory)
    agencies = dict(DEFAULT_AGENCIES if agencies is None else agencies)
    for code in agencies:
        if not _CODE_RE.match(code) or code in (".", ".."):
            raise ValueError(f"agency code {code!r} is not usable as a folder name")
    now = _utc(now or dt.datetime.now(dt.timezone.utc))
    params = {"format": MANIFEST_FORMAT, "agencies": agencies,
              "ocsp_url": ocsp_url, "crl_url": crl_url}
    if force:
        why = "regeneration was forced" if _is_ours(directory) else ""
    else:
        existing, why = _load_if_current(directory, params, now)
        if existing is not None:
            return existing
    overwritten = tuple(name for name in foreign_content(directory) if name in _OWNED_ENTRIES)
    _generate(directory, agencies, now, ocsp_url, crl_url)
    manifest = dict(params, generated_at=now.isoformat())
    (directory / "pki.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    pki = _load(directory, agencies, ocsp_url, crl_url, created=True)
    return replace(pki, regenerated=why, overwritten=overwritten)


def foreign_content(directory: Path) -> list[str]:
    """The entries of `directory` when it is not empty and holds no PKI made here (no
    readable pki.json of ours); an empty list when it is empty, missing or ours.

    Why: regenerating replaces README.txt, chain.pem, trust/ and the like; in a folder this
    module did not make, those are someone else's files.
    """
    directory = Path(directory)
    try:
        names = sorted(entry.name for entry in directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    if not names or _is_ours(directory):
        return []
    return names


def _is_ours(directory: Path) -> bool:
    """Whether `directory` holds a manifest written by :func:`create_dev_pki`."""
    try:
        manifest = json.loads((directory / "pki.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT


# --- generation ---------------------------------------------------------------------------------

def _generate(directory: Path, agencies: dict[str, str], now: dt.datetime,
              ocsp_url: str | None, crl_url: str | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for entry in _OWNED_ENTRIES:
        path = directory / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    day, year = dt.timedelta(days=1), dt.timedelta(days=365)
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION)

    def cn(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"), org,
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    # CAs are backdated three years so that past signing times can be validated in demos/tests.
    root_key, issuing_key = _new_key(), _new_key()
    root = issue_certificate(cn(ROOT_CA_NAME), root_key.public_key(), None, root_key,
                             not_before=now - 3 * year, not_after=now + 10 * year, ca=True,
                             path_length=1, key_usage=("key_cert_sign", "crl_sign"))
    issuing = issue_certificate(cn(ISSUING_CA_NAME), issuing_key.public_key(), root, root_key,
                                not_before=now - 3 * year, not_after=now + 8 * year, ca=True,
                                path_length=0, key_usage=("key_cert_sign", "crl_sign"))
    _write_pem(directory / "root-ca.pem", root)
    _write_pem(directory / "issuing-ca.pem", issuing)
    _write_pem(directory / "trust" / "root-ca.pem", root)
    (directory / "chain.pem").write_bytes(_pem(issuing) + _pem(root))
    _write_key(directory / "private" / "root-ca.key", root_key)
    _write_key(directory / "private" / "issuing-ca.key", issuing_key)

    def leaf(folder: Path, subject: x509.Name, *, not_before: dt.datetime, not_after: dt.datetime,
             key_usage: tuple[str, ...], eku: list[ObjectIdentifier],
             key_file: str = "key.pem", cert_file: str = "cert.pem",
             **kw: object) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        key = _new_key()
        cert = issue_certificate(subject, key.public_key(), issuing, issuing_key,
                                 not_before=not_before, not_after=not_after, key_usage=key_usage,
                                 extended_key_usage=eku, ocsp_url=ocsp_url, crl_url=crl_url,
                                 **kw)  # type: ignore[arg-type]
        _write_key(folder / key_file, key)
        _write_pem(folder / cert_file, cert)
        return key, cert

    signing_ku = ("digital_signature", "content_commitment")
    signing_eku = [DOCUMENT_SIGNING_EKU, ExtendedKeyUsageOID.EMAIL_PROTECTION]
    index: dict[str, dict[str, object]] = {}

    def record(cert: x509.Certificate, status: str = "good", revoked_at: dt.datetime | None = None,
               reason: x509.ReasonFlags | None = None) -> None:
        index[format(cert.serial_number, "x")] = {
            "subject": cert.subject.rfc4514_string(), "status": status,
            "revocation_time": revoked_at.isoformat() if revoked_at else None,
            "reason": reason.value if reason else None,
        }

    for code, name in agencies.items():
        folder = directory / "agencies" / code
        key, cert = leaf(folder, agency_name(code, name), not_before=now - day,
                         not_after=now + 2 * year, key_usage=signing_ku, eku=signing_eku)
        passphrase = secrets.token_urlsafe(18).encode()
        _write_secret(folder / "p12-passphrase.txt", passphrase + b"\n")
        bundle = pkcs12.serialize_key_and_certificates(
            code.encode(), key, cert, [issuing, root],
            serialization.BestAvailableEncryption(passphrase))
        _write_secret(folder / "bundle.p12", bundle)
        record(cert)

    tls = directory / "tls"
    _, server = leaf(tls, cn("localhost"), not_before=now - day, not_after=now + year,
                     key_usage=("digital_signature", "key_encipherment"),
                     eku=[ExtendedKeyUsageOID.SERVER_AUTH], key_file="server.key",
                     cert_file="server.pem",
                     san=[x509.DNSName("localhost"),
                          x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    _, client = leaf(tls, cn("edoc-connector dev client"), not_before=now - day,
                     not_after=now + year, key_usage=("digital_signature",),
                     eku=[ExtendedKeyUsageOID.CLIENT_AUTH], key_file="client.key",
                     cert_file="client.pem")
    responder_key = _new_key()
    responder = issue_certificate(
        cn("Dev OCSP Responder — NOT FOR PRODUCTION"), responder_key.public_key(), issuing,
        issuing_key, not_before=now - day, not_after=now + year, key_usage=("digital_signature",),
        extended_key_usage=[ExtendedKeyUsageOID.OCSP_SIGNING], extra=[x509.OCSPNoCheck()])
    _write_key(directory / "ocsp" / "responder.key", responder_key)
    _write_pem(directory / "ocsp" / "responder.pem", responder)
    for cert in (server, client, responder):
        record(cert)

    revoked_at = now - dt.timedelta(hours=1)
    reason = x509.ReasonFlags.cessation_of_operation
    revoked_name = agency_name(REVOKED_CODE, "Cơ quan thử nghiệm (đã thu hồi)")
    _, revoked = leaf(directory / "revoked", revoked_name, not_before=now - 30 * day,
                      not_after=now + 2 * year, key_usage=signing_ku, eku=signing_eku)
    record(revoked, "revoked", revoked_at, reason)
    expired_name = agency_name(EXPIRED_CODE, "Cơ quan thử nghiệm (hết hạn)")
    _, expired = leaf(directory / "expired", expired_name, not_before=now - 2 * year,
                      not_after=now - 30 * day, key_usage=signing_ku, eku=signing_eku)
    record(expired)

    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuing.subject)
        .last_update(now - dt.timedelta(minutes=1))
        .next_update(now + 30 * day)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing_key.public_key()),
                       critical=False)
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(revoked.serial_number)
            .revocation_date(revoked_at).add_extension(x509.CRLReason(reason), critical=False)
            .build())
        .sign(issuing_key, hashes.SHA256())
    )
    (directory / "crl").mkdir(parents=True, exist_ok=True)
    (directory / "crl" / "issuing-ca.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    (directory / "crl" / "issuing-ca.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    (directory / "ocsp" / "index.json").write_text(json.dumps(index, ensure_ascii=False, indent=2))
    (directory / "README.txt").write_text(_readme(agencies, ocsp_url, crl_url), encoding="utf-8")


def _readme(agencies: dict[str, str], ocsp_url: str | None, crl_url: str | None) -> str:
    doc = __doc__ or ""
    layout = doc[doc.index("Layout written"):]
    codes = "\n".join(f"    {code}  {name}" for code, name in agencies.items())
    return (
        "DEVELOPMENT PKI — NOT FOR PRODUCTION\n\n"
        "Generated by connector.signing.devpki.create_dev_pki. Private keys are unencrypted and\n"
        "PKCS#12 passphrases are stored in clear: never use any of this outside development.\n\n"
        f"Agencies:\n{codes}\n\n"
        f"OCSP URL: {ocsp_url or '(none)'}\nCRL URL:  {crl_url or '(none)'}\n\n"
        + layout
    )


# --- loading ------------------------------------------------------------------------------------

class _Unusable(ValueError):
    """A file of an existing PKI that is missing or damaged; the message names it."""


_PARAMETER_NAMES = {"format": "manifest format", "agencies": "agencies", "ocsp_url": "OCSP URL",
                    "crl_url": "CRL URL"}


def _load_if_current(directory: Path, params: dict[str, object],
                     now: dt.datetime) -> tuple[DevPki | None, str]:
    """The PKI in `directory` if it can be kept as it is; else None and why not ("" when
    there is no PKI at all), naming the file or parameter, for the caller to say."""
    manifest_path = directory / "pki.json"
    if not manifest_path.exists():
        return None, ""
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            return None, "pki.json is damaged"
        differ = [name for key, name in _PARAMETER_NAMES.items() if manifest.get(key) != params[key]]
        if differ:
            verb = "differs" if len(differ) == 1 else "differ"
            return None, f"the {' and '.join(differ)} asked for {verb} from what pki.json records"
        pki = _load(directory, params["agencies"], params["ocsp_url"],  # type: ignore[arg-type]
                    params["crl_url"], created=False)  # type: ignore[arg-type]
        for path in (pki.crl_der_path, pki.crl_pem_path, pki.ocsp_index_path, pki.chain_path,
                     pki.trust_dir / "root-ca.pem", pki.directory / "README.txt"):
            if not path.is_file():
                return None, f"{_relative(path, directory)} is missing"
        for agency in pki.agencies.values():
            for path in (agency.p12_path, agency.p12_passphrase_path):
                if not path.is_file():
                    return None, f"{_relative(path, directory)} is missing"
        current = [pki.root_ca, pki.issuing_ca, pki.tls_server, pki.tls_client,
                   pki.ocsp_responder, *pki.agencies.values()]
        for cred in [*current, pki.revoked, pki.expired]:
            problem = _key_problem(cred.key_path)
            if problem:
                return None, f"{_relative(cred.key_path, directory)} {problem}"
        for cred in current:
            c = cred.certificate
            if not (c.not_valid_before_utc <= now <= c.not_valid_after_utc):
                return None, f"{_relative(cred.cert_path, directory)} is not valid now"
        try:
            next_update = pki.crl().next_update_utc
        except ValueError:
            return None, "crl/issuing-ca.crl is damaged"
        if next_update is None or next_update <= now:
            return None, "crl/issuing-ca.crl is past its nextUpdate"
        return pki, ""
    except _Unusable as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"{exc.filename or 'a file'} cannot be read ({exc.strerror or exc})"
    except (ValueError, KeyError, TypeError):
        return None, "pki.json is damaged"


def _key_problem(path: Path) -> str:
    """Why a private key file of the PKI is unusable ("" if it is not)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "is missing"
    try:
        serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError):
        return "is damaged (not a readable PEM private key)"
    return ""


def _relative(path: Path, directory: Path) -> str:
    try:
        return str(path.relative_to(directory))
    except ValueError:
        return str(path)


def _load(directory: Path, agencies: dict[str, str], ocsp_url: str | None, crl_url: str | None,
          *, created: bool) -> DevPki:
    def cred(key: str, cert: str) -> Credential:
        path = directory / cert
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise _Unusable(f"{cert} is missing") from None
        try:
            certificate = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise _Unusable(f"{cert} is damaged (not a readable PEM certificate)") from None
        return Credential(directory / key, path, certificate)

    loaded: dict[str, AgencyCredential] = {}
    for code, name in agencies.items():
        folder = directory / "agencies" / code
        base = cred(f"agencies/{code}/key.pem", f"agencies/{code}/cert.pem")
        loaded[code] = AgencyCredential(base.key_path, base.cert_path, base.certificate, code, name,
                                        folder / "bundle.p12", folder / "p12-passphrase.txt")
    return DevPki(
        directory=directory,
        root_ca=cred("private/root-ca.key", "root-ca.pem"),
        issuing_ca=cred("private/issuing-ca.key", "issuing-ca.pem"),
        agencies=loaded,
        tls_server=cred("tls/server.key", "tls/server.pem"),
        tls_client=cred("tls/client.key", "tls/client.pem"),
        ocsp_responder=cred("ocsp/responder.key", "ocsp/responder.pem"),
        revoked=cred("revoked/key.pem", "revoked/cert.pem"),
        expired=cred("expired/key.pem", "expired/cert.pem"),
        ocsp_url=ocsp_url,
        crl_url=crl_url,
        created=created,
    )


# --- small helpers ------------------------------------------------------------------------------

def _utc(moment: dt.datetime) -> dt.datetime:
    """Aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_pem(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_pem(cert))


def _write_key(path: Path, key: PrivateKeyTypes) -> None:
    _write_secret(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _write_secret(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (0600), created with that mode from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)
