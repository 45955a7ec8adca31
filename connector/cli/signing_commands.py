"""CLI commands for signatures and the development PKI: sign, verify, certs dev-init."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import tomllib
from pathlib import Path

import click

from ..edxml.build import BuildError
from ..edxml.errors import EdxmlError
from ..edxml.files import make_folder, remove_folders
from ..edxml.model import Edoc
from ..edxml.parse import Parsed, parse
from ..edxml.reader import element_path
from ..signing.devpki import create_dev_pki, foreign_content
from ..signing.keys import KeySourceError, SigningKey, configuration_field, load_signing_key
from ..signing.policy import MODES, SenderRule, SignaturePolicy
from ..signing.revocation import RevocationChecker
from ..signing.sign import sign
from ..signing.signer_check import signing_certificate_problems
from ..signing.trust import TrustStore, TrustStoreError
from ..signing.verify import TrustOptions, verify
from ..input_files import InputFile

EXIT_INVALID = 1
DEFAULT_TRUST = Path(__file__).resolve().parents[2] / "certs" / "trust"

_file = InputFile()


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(EXIT_INVALID)


def _output_path(ctx: click.Context, param: click.Parameter, value: str) -> Path:
    """OUTPUT as a path; an empty one is a usage error (``Path("")`` would be the current folder)."""
    if not value.strip():
        raise click.BadParameter("the output path is empty", ctx=ctx, param=param)
    return Path(value)


# --------------------------------------------------------------------------- sign


@click.command("sign")
@click.argument("source", type=_file)
@click.argument("output", type=click.Path(dir_okay=False), callback=_output_path)
@click.option("--key", "key_file", type=_file, help="Private key (PEM, optionally encrypted).")
@click.option("--cert", "cert_file", type=_file, help="The signing certificate (PEM).")
@click.option("--chain", "chain_file", type=_file, help="Intermediate certificates (PEM).")
@click.option("--passphrase", help="Where the key's passphrase is: env:NAME or file:/path (never the passphrase itself).")
@click.option("--algorithm", type=click.Choice(["rsa-sha256", "rsa-pss-sha256", "ecdsa-sha256"]))
@click.option("--config", "config_file", type=_file, help="A TOML file whose [signing.key] table names the key source.")
def sign_cmd(source, output, key_file, cert_file, chain_file, passphrase, algorithm, config_file) -> None:
    """Sign an edXML document (enveloped XMLDSig over the whole document) into OUTPUT.

    The document is re-emitted in the VNPT layout with the Signature as the last child of
    edXMLHeader; an existing (placeholder) signature is replaced. A certificate the verifier
    would refuse (expired, a CA's, without digitalSignature, another agency's) is refused
    before signing; what the input holds that the signed document does not carry (unknown
    attributes, existing Signature elements) is listed on stderr.
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
                names = ", ".join(f"{u.path} (line {u.line})" if u.line else u.path for u in message.unknown)
                _fail(f"{source}: not signed: unknown elements would be dropped from the signed document ({names})")
            problems = signing_certificate_problems(key.certificate, sender=message.from_.organ_id)
            if problems:
                subject = key.certificate.subject.rfc4514_string()
                _fail(f"{source}: not signed: verify would refuse a signature by the certificate {subject}: "
                      + "; ".join(problems))
            _report_not_carried(source, parsed)
            info = _sign_atomically(message, key, output)
    except EdxmlError as exc:
        _fail(f"{source}: cannot be read as edXML:\n  " + "\n  ".join(str(p) for p in exc.problems))
    except BuildError as exc:
        _fail(f"{source}: not signed: the document cannot be written: {exc}")
    except KeySourceError as exc:
        _fail(f"{source}: not signed: signing key: {exc}")
    click.echo(f"{output}: signed by {info.signer_subject} (serial {info.signer_serial}) at {info.signing_time.isoformat()}")


#: validation warnings about input the signed document does not carry
_NOT_CARRIED = ("unknown-attribute", "unknown-element")


def _report_not_carried(source: Path, parsed: Parsed) -> None:
    """Print (stderr) each validation warning of the input, saying where its content is not
    carried into the signed document, and each existing Signature element (sign writes its
    own). The signed document is re-emitted from the model, so these are dropped."""
    reported: set[tuple[int | None, str]] = set()
    for problem in parsed.report.warnings:
        if problem.code in _NOT_CARRIED:
            reported.add((problem.line, problem.path))
            click.echo(f"{problem.located(str(source))}; not carried into the signed document", err=True)
        else:
            click.echo(str(problem.located(str(source))), err=True)
    for element in parsed.root.iter("{*}Signature"):  # any namespace, or none
        if (element.sourceline, element_path(element)) in reported:
            continue
        click.echo(f"{source}, line {element.sourceline}, {element_path(element)}: warning: existing Signature "
                   "not carried into the signed document (replaced by the new signature)", err=True)


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
        if config_file is None:
            _fail(f"signing key: {exc}")
        field = configuration_field(exc)
        if field is None:  # a file, variable or token the table names: the error names it
            _fail(f"signing key of {config_file} [signing.key]: {exc}")
        _fail(f"{config_file}: [signing.key]{' ' + field if field else ''}: {exc.problem}")
        raise  # unreachable


def _sign_atomically(message: Edoc, key: SigningKey, output: Path):
    """Sign into a temporary file next to ``output``, then rename it: a failure leaves no
    partial output. The temporary name is short and fixed in form (``.tmp-XXXXXXXX.edxml``),
    so an output name near the 255-byte limit still has room. Folders created for the output
    are removed again when signing fails."""
    created = make_folder(output.parent)
    moved = False
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".edxml", dir=output.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                info = sign(message, key, fh)
            os.replace(tmp, output)
            moved = True
        finally:
            Path(tmp).unlink(missing_ok=True)
    finally:
        if not moved:
            remove_folders(created)
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
    store = _trust_store(trust_dir)
    checker = None if revocation == "off" else RevocationChecker(revocation)
    rules = SignaturePolicy(SenderRule(policy, allow_weak))
    try:
        with verify(file, TrustOptions(store, checker), policy=rules, source_name=str(file)) as result:
            verdict, decision = result.verdict, result.decision
            problems = result.parsed.report.errors
    except EdxmlError as exc:
        _fail(f"{file}: cannot be read as edXML:\n  " + "\n  ".join(str(p) for p in exc.problems))
    skipped = [f"trust anchor file {s.path} skipped: {s.reason}" for s in store.skipped]
    if as_json:
        click.echo(json.dumps({
            "file": str(file),
            "verdict": verdict.to_dict(),
            "policy": decision.mode,
            "accepted": decision.accepted and not problems,
            "problems": [p.to_dict() for p in problems],
            "trust_warnings": skipped,
        }, ensure_ascii=False, indent=2))
    else:
        click.echo(f"{file}: signature {verdict.describe()}")
        # With no anchor at all, the verdict's reason already names the skipped files.
        for warning in [*verdict.warnings, *(skipped if store.anchors else ())]:
            click.echo(f"  warning: {warning}")
        click.echo(f"  policy {decision.mode}: {'accepted' if decision.accepted else 'REFUSED'}")
        for problem in problems:
            click.echo(f"  {problem}")
    sys.exit(0 if decision.accepted and not problems else EXIT_INVALID)


def _trust_store(trust_dir: Path | None) -> TrustStore:
    """The anchors of ``--trust`` (a folder that must exist) or of the default folder (an
    empty store, named, when it is missing). Files it skips are reported by the caller, so
    the module's log line about them is not printed a second time."""
    if trust_dir is not None and not trust_dir.is_dir():
        what = "is not a folder" if trust_dir.exists() else "does not exist"
        raise click.BadParameter(f"trust-anchor folder {trust_dir} {what}", param_hint="'--trust'")
    directory = trust_dir or DEFAULT_TRUST
    if not directory.is_dir():
        return TrustStore((), (), str(directory))
    logging.getLogger("connector.signing.trust").addHandler(logging.NullHandler())
    try:
        return TrustStore.from_directory(directory)
    except TrustStoreError as exc:
        raise click.BadParameter(str(exc), param_hint="'--trust'") from None


# --------------------------------------------------------------------------- certs


@click.group("certs")
def certs_group() -> None:
    """Certificates: the development PKI."""


@certs_group.command("dev-init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True,
              help="Regenerate even if DIR already holds a complete PKI; write into a non-empty DIR "
                   "that holds no PKI made here (its README.txt, chain.pem, trust/... are replaced).")
@click.option("--ocsp-url", help="OCSP URL to embed in the certificates (AIA).")
@click.option("--crl-url", help="CRL URL to embed in the certificates (CDP).")
def dev_init_cmd(directory: Path, force: bool, ocsp_url: str | None, crl_url: str | None) -> None:
    """Create a complete development PKI in DIRECTORY (never for production).

    An existing PKI made here is kept when complete and current, and otherwise regenerated
    whole (root CA included), saying why. A non-empty folder that holds no PKI made here is
    refused unless --force.
    """
    foreign = foreign_content(directory)
    if foreign and not force:
        shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
        _fail(f"{directory}: not empty and holds no development PKI made by this tool (no pki.json): {shown}; "
              "refusing to write there (choose an empty or new folder, or use --force to replace "
              "README.txt, chain.pem, trust/ and the other PKI entries in it)")
    pki = create_dev_pki(directory, force=force, ocsp_url=ocsp_url, crl_url=crl_url)
    click.echo(_dev_init_outcome(directory, pki, force))
    click.echo(f"  trust anchors : {pki.trust_dir}")
    click.echo(f"  chain         : {pki.chain_path}")
    for code, agency in pki.agencies.items():
        click.echo(f"  {code:<14}: {agency.cert_path} ({agency.certificate.subject.rfc4514_string()})")
    click.echo(f"  TLS server    : {pki.tls_server.cert_path}")
    click.echo(f"  TLS client    : {pki.tls_client.cert_path}")
    click.echo(f"  CRL           : {pki.crl_der_path}")
    click.echo(f"  OCSP responder: {pki.ocsp_responder.cert_path}")


def _dev_init_outcome(directory: Path, pki, force: bool) -> str:
    """One line: created, kept, or regenerated and why (a new root CA: whatever trusted or
    was signed under the old one no longer verifies), and what of a foreign folder was replaced."""
    if not pki.created:
        return f"kept existing development PKI in {directory}"
    if pki.overwritten:
        return (f"created development PKI in {directory}, replacing {', '.join(pki.overwritten)} "
                "that were there (--force)")
    if pki.regenerated:
        why = " (--force)" if force else f": {pki.regenerated}"
        return (f"regenerated the whole development PKI in {directory}{why}; new root CA: copies of the "
                "old trust anchors, and documents signed under them, no longer verify")
    return f"created development PKI in {directory}"
