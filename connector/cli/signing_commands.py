"""CLI commands for signatures and the development PKI: sign, verify, certs dev-init."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import tomllib
from pathlib import Path

import click

from ..edxml.errors import EdxmlError
from ..edxml.model import Edoc
from ..edxml.parse import parse
from ..signing.devpki import create_dev_pki
from ..signing.keys import KeySourceError, SigningKey, load_signing_key
from ..signing.policy import MODES, SenderRule, SignaturePolicy
from ..signing.revocation import RevocationChecker
from ..signing.sign import sign
from ..signing.trust import TrustStore, TrustStoreError
from ..signing.verify import TrustOptions, verify

EXIT_INVALID = 1
DEFAULT_TRUST = Path(__file__).resolve().parents[2] / "certs" / "trust"

_file = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(EXIT_INVALID)


# --------------------------------------------------------------------------- sign


@click.command("sign")
@click.argument("source", type=_file)
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_file", type=_file, help="Private key (PEM, optionally encrypted).")
@click.option("--cert", "cert_file", type=_file, help="The signing certificate (PEM).")
@click.option("--chain", "chain_file", type=_file, help="Intermediate certificates (PEM).")
@click.option("--passphrase", help="Where the key's passphrase is: env:NAME or file:/path (never the passphrase itself).")
@click.option("--algorithm", type=click.Choice(["rsa-sha256", "rsa-pss-sha256", "ecdsa-sha256"]))
@click.option("--config", "config_file", type=_file, help="A TOML file whose [signing.key] table names the key source.")
def sign_cmd(source, output, key_file, cert_file, chain_file, passphrase, algorithm, config_file) -> None:
    """Sign an edXML document (enveloped XMLDSig over the whole document) into OUTPUT.

    The document is re-emitted in the VNPT layout with the Signature as the last child of
    edXMLHeader; an existing (placeholder) signature is replaced.
    """
    key = _load_key(key_file, cert_file, chain_file, passphrase, algorithm, config_file)
    try:
        with parse(source, source_name=str(source)) as parsed:
            if parsed.report.errors:
                click.echo(f"{source}: not signed, the document is invalid:", err=True)
                for problem in parsed.report.errors:
                    click.echo(f"  {problem}", err=True)
                sys.exit(EXIT_INVALID)
            message = parsed.message
            if not isinstance(message, Edoc):
                _fail(f"{source}: a status message is not signed (only documents carry a Signature)")
            if message.unknown:
                names = ", ".join(u.path for u in message.unknown)
                _fail(f"{source}: not signed: unknown elements would be dropped from the signed document ({names})")
            info = _sign_atomically(message, key, output)
    except EdxmlError as exc:
        _fail(f"{source}: cannot be read as edXML:\n  " + "\n  ".join(str(p) for p in exc.problems))
    click.echo(f"{output}: signed by {info.signer_subject} (serial {info.signer_serial}) at {info.signing_time.isoformat()}")


def _load_key(key_file, cert_file, chain_file, passphrase, algorithm, config_file) -> SigningKey:
    if config_file is not None:
        try:
            config = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise click.UsageError(f"{config_file}: not valid TOML: {exc}") from None
        spec = config.get("signing", {}).get("key")
        if not isinstance(spec, dict):
            raise click.UsageError(f"{config_file}: no [signing.key] table")
        base_dir = config_file.parent
    else:
        if key_file is None or cert_file is None:
            raise click.UsageError("give --key and --cert, or --config")
        spec = {"type": "pem", "key": str(key_file), "cert": str(cert_file)}
        if chain_file:
            spec["chain"] = str(chain_file)
        if passphrase:
            spec["passphrase"] = passphrase
        if algorithm:
            spec["algorithm"] = algorithm
        base_dir = None
    try:
        return load_signing_key(spec, base_dir=base_dir)
    except KeySourceError as exc:
        _fail(f"signing key: {exc}")
        raise  # unreachable


def _sign_atomically(message: Edoc, key: SigningKey, output: Path):
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            info = sign(message, key, fh)
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return info


# --------------------------------------------------------------------------- verify


@click.command("verify")
@click.argument("file", type=_file)
@click.option("--trust", "trust_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Folder of trust-anchor PEM files [default: {DEFAULT_TRUST}].")
@click.option("--policy", type=click.Choice(MODES), default="require", show_default=True)
@click.option("--revocation", type=click.Choice(["off", "soft-fail", "hard-fail"]), default="off", show_default=True)
@click.option("--allow-weak", is_flag=True, help="Accept SHA-1 and RSA keys under 2048 bits.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def verify_cmd(file: Path, trust_dir: Path | None, policy: str, revocation: str, allow_weak: bool, as_json: bool) -> None:
    """Verify a document's signature; exit 0 when the policy passes, 1 when it fails."""
    directory = trust_dir or DEFAULT_TRUST
    try:
        store = TrustStore.from_directory(directory) if directory.is_dir() else TrustStore.from_certificates([])
    except TrustStoreError as exc:
        raise click.UsageError(f"trust anchors: {exc}") from None
    checker = None if revocation == "off" else RevocationChecker(revocation)
    rules = SignaturePolicy(SenderRule(policy, allow_weak))
    try:
        with verify(file, TrustOptions(store, checker), policy=rules, source_name=str(file)) as result:
            verdict, decision = result.verdict, result.decision
            problems = result.parsed.report.errors
    except EdxmlError as exc:
        _fail(f"{file}: cannot be read as edXML:\n  " + "\n  ".join(str(p) for p in exc.problems))
    if as_json:
        click.echo(json.dumps({
            "file": str(file),
            "verdict": verdict.to_dict(),
            "policy": decision.mode,
            "accepted": decision.accepted and not problems,
            "problems": [p.to_dict() for p in problems],
        }, ensure_ascii=False, indent=2))
    else:
        click.echo(f"{file}: signature {verdict.describe()}")
        for warning in verdict.warnings:
            click.echo(f"  warning: {warning}")
        click.echo(f"  policy {decision.mode}: {'accepted' if decision.accepted else 'REFUSED'}")
        for problem in problems:
            click.echo(f"  {problem}")
    sys.exit(0 if decision.accepted and not problems else EXIT_INVALID)


# --------------------------------------------------------------------------- certs


@click.group("certs")
def certs_group() -> None:
    """Certificates: the development PKI."""


@certs_group.command("dev-init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Regenerate even if DIR already holds a complete PKI.")
@click.option("--ocsp-url", help="OCSP URL to embed in the certificates (AIA).")
@click.option("--crl-url", help="CRL URL to embed in the certificates (CDP).")
def dev_init_cmd(directory: Path, force: bool, ocsp_url: str | None, crl_url: str | None) -> None:
    """Create a complete development PKI in DIRECTORY (never for production)."""
    pki = create_dev_pki(directory, force=force, ocsp_url=ocsp_url, crl_url=crl_url)
    click.echo(f"{'created' if pki.created else 'kept existing'} development PKI in {directory}")
    click.echo(f"  trust anchors : {pki.trust_dir}")
    click.echo(f"  chain         : {pki.chain_path}")
    for code, agency in pki.agencies.items():
        click.echo(f"  {code:<14}: {agency.cert_path} ({agency.certificate.subject.rfc4514_string()})")
    click.echo(f"  TLS server    : {pki.tls_server.cert_path}")
    click.echo(f"  TLS client    : {pki.tls_client.cert_path}")
    click.echo(f"  CRL           : {pki.crl_der_path}")
    click.echo(f"  OCSP responder: {pki.ocsp_responder.cert_path}")
