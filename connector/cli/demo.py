"""``demo``: a visible walk through the codec, until the daemon exists to show documents flow.

It writes a sample công văn (Vietnamese metadata, a PDF attachment) as JSON, builds the edXML,
signs it with a key of the development PKI, verifies the signature (and shows a tampered copy
refused), validates and inspects it, extracts it as a receiving DMS would, and answers it with
a status message (01 Đã đến). Everything lands under the work folder for anyone to look at.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..edxml.build import build
from ..edxml.files import document_from_json, extract_to
from ..edxml.jsonform import dumps, to_json
from ..edxml.parse import parse
from ..edxml.samples import make_pdf, sample_edoc, sample_status
from ..signing.devpki import create_dev_pki
from ..signing.keys import load_signing_key
from ..signing.policy import SenderRule, SignaturePolicy
from ..signing.sign import sign
from ..signing.verify import TrustOptions, verify
from .edxml_commands import summary


@click.command("demo")
@click.option("--workdir", default="demo", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--once", is_flag=True, help="Accepted for compatibility; the codec demo always runs once.")
def demo_cmd(workdir: Path, once: bool) -> None:
    """Build, validate, inspect and extract a sample document under WORKDIR."""
    outbox, out, inbox = workdir / "outbox", workdir / "out", workdir / "inbox"
    for folder in (outbox, out):
        folder.mkdir(parents=True, exist_ok=True)
    doc = sample_edoc()
    pdf_name = doc.attachments[0].name
    (outbox / pdf_name).write_bytes(make_pdf("Cong van mau", ["Demo of the edXML codec"]))
    doc_json = to_json(doc)
    doc_json["attachments"], doc_json["manifest"] = [], []
    (outbox / "document.json").write_text(json.dumps(doc_json, ensure_ascii=False, indent=2), encoding="utf-8")
    click.echo(f"1. The DMS drops {outbox / 'document.json'} and {outbox / pdf_name}")

    message = document_from_json(doc_json, [outbox / pdf_name], "zip")
    unsigned_path = out / "document.unsigned.edxml"
    build(message, unsigned_path)
    click.echo(f"2. Built {unsigned_path} ({unsigned_path.stat().st_size} bytes, VNPT layout, attachment zipped)")

    pki = create_dev_pki(workdir / "pki")
    agency = pki.agencies[message.from_.organ_id]
    key = load_signing_key(
        {"type": "pem", "key": str(agency.key_path), "cert": str(agency.cert_path), "chain": str(pki.chain_path)}
    )
    edxml_path = out / "document.edxml"
    info = sign(message, key, edxml_path)
    click.echo(f"   Signed {edxml_path} as {info.signer_subject} (development PKI in {workdir / 'pki'})")
    trust = TrustOptions.from_directory(pki.trust_dir)
    policy = SignaturePolicy(SenderRule("require"))
    with verify(edxml_path, trust, policy=policy) as checked:
        click.echo(f"   Verified: {checked.verdict.describe()}")
        signature_ok = checked.decision.accepted
    tampered = out / "document.tampered.edxml"
    tampered.write_bytes(edxml_path.read_bytes().replace("Công văn".encode(), "Quyết định".encode(), 1))
    with verify(tampered, trust, policy=policy) as checked:
        click.echo(f"   A tampered copy ({tampered.name}): {checked.verdict.describe()}")
        signature_ok = signature_ok and not checked.decision.accepted

    with parse(edxml_path) as parsed:
        report = parsed.report
        click.echo(f"3. Validated: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
        for problem in report.problems:
            click.echo(f"   {problem}")
        click.echo("4. What the receiving văn thư sees:")
        click.echo("   " + summary(parsed.message).replace("\n", "\n   "))
        target = inbox / parsed.message.document_id.replace("/", "_").replace(",", "_")
        written = extract_to(parsed.message, target)
        click.echo(f"5. Extracted into {target}: {', '.join(p.name for p in written)}")
        status = sample_status(parsed.message, "01")
    status_path = out / "status-01.edxml"
    build(status, status_path)
    with parse(status_path) as parsed_status:
        ok = parsed_status.report.ok
        click.echo(f"6. Answered with {status_path} (status 01 Đã đến), valid: {ok}")
        click.echo(dumps(parsed_status.message))
    if not report.ok or not ok or not signature_ok:
        sys.exit(1)
