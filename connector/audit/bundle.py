"""Export bundles for auditors, and checking them offline.

A bundle is a ZIP an auditor can check without the connector (README.txt in it says how):

    README.txt                      how to check it, step by step (sha256sum, openssl, python3)
    manifest.json                   what was selected, the batches, the SHA-256 of every file
    SHA256SUMS                      the same digests for ``sha256sum -c`` (manifest.json included)
    log/entries.jsonl               the log segment: every entry of every batch that holds a
                                    selected entry, one canonical JSON line each, in seq order
    batches/NNNNNN.statement        the bytes each batch signature covers (its Merkle root)
    batches/NNNNNN.sig              the signature (``openssl dgst -verify`` form)
    batches/NNNNNN.tst              the RFC 3161 time-stamp token over the .sig file (DER)
    certs/signer-<fp>.pem, -chain.pem, .pub.pem   the signer's certificate, chain, public key
    certs/tsa-<fp>.pem              the TSA certificate(s) found in the tokens
    certs/tsa-ca-roots.pem, tsa-ca-intermediates.pem   the TSA's CA, when given at export
    evidence/<sha256>               the exact bytes exchanged, for the selected entries
    tools/check_log.py              the standalone checker (``connector/audit/standalone.py``)
    tools/openssl-checks.sh         the openssl command for every signature and time-stamp

Only whole batches are exported, because only a whole batch can be checked against its signed
Merkle root; entries of other documents in those batches come along (metadata and digests
only: their evidence files are not included). Selected entries that are not sealed yet are not
exported, and the export says so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ..signing.trust import TrustStore
from ..store.evidence import EvidenceStore
from . import standalone
from .log import AuditError
from .reader import LogReader, LogReadError
from .records import Batch, FieldDecoder, describe_value
from .seal import OPENSSL_OPTIONS, load_pem_chain
from .standalone import entry_line, format_time, parse_time
from .tsa import wrap_token
from .verify import VerifyReport, check_batch

BUNDLE_FORMAT = "edoc-connector audit bundle"
BUNDLE_VERSION = 1
_CHUNK = 1 << 20
#: Refuse to unpack bundles whose declared size is absurd (a ZIP bomb), in bytes.
MAX_UNPACKED = 64 << 30


@dataclass
class ExportResult:
    path: Path
    entries: int
    selected: int
    batches: int
    evidence_files: int
    not_sealed: list[int] = field(default_factory=list)


# ---------------------------------------------------------------------- export


def export_bundle(engine: sa.Engine, evidence: EvidenceStore, output: Path, *, document_id: str | None = None,
                  since: dt.datetime | None = None, until: dt.datetime | None = None,
                  archive_dir: Path | None = None,
                  tsa_ca: Sequence[x509.Certificate] | None = None) -> ExportResult:
    """Write a bundle for one document (``document_id``, matching document or tracking id) or a
    period (``since`` <= at < ``until``); AuditError says why nothing could be exported."""
    if (document_id is None) == (since is None and until is None):
        raise AuditError("export: give either a document id or a period")
    reader = LogReader(engine, archive_dir)
    try:
        if document_id is not None:
            selected = [f for f, _ in reader.find(document_id)]
            what = f"document {document_id}"
        else:
            window = reader.window(since, until)
            selected = []
            if window is not None:
                for fields, _ in reader.entries(*window):
                    at = parse_time(fields["at"])
                    if (since is None or at >= since) and (until is None or at < until):
                        selected.append(fields)
            what = "the period"
        if not selected:
            raise AuditError(f"export: no audit entries for {what}")
        seqs = sorted({f["seq"] for f in selected})
        all_batches = [b for b, _ in reader.batches(seqs[0], seqs[-1])]
        chosen: dict[int, Batch] = {}
        not_sealed: list[int] = []
        for seq in seqs:
            batch = next((b for b in all_batches if b.first_seq <= seq <= b.last_seq), None)
            if batch is None:
                not_sealed.append(seq)
            else:
                chosen[batch.id] = batch
        if not chosen:
            raise AuditError(f"export: the {len(not_sealed)} entries for {what} are not sealed yet; "
                             "export again after the next seal")
        batches = sorted(chosen.values(), key=lambda b: b.first_seq)
        ranges = [(b.first_seq, b.last_seq) for b in batches]
        entries = [f for a, b in ranges for f, _ in reader.entries(a, b)]
    except LogReadError as exc:
        raise AuditError(str(exc)) from None
    selected_seqs = [s for s in seqs if s not in not_sealed]
    chosen_set = set(selected_seqs)
    digests: dict[str, int] = {}
    for fields in entries:
        if fields["seq"] in chosen_set and fields["sha256"]:
            digests.setdefault(fields["sha256"], fields["seq"])
    for digest, seq in digests.items():
        if not evidence.has(digest):
            raise AuditError(f"export: evidence file {evidence.path_for(digest)} (entry seq {seq}) is missing; "
                             "run 'audit verify'")
    selection: dict[str, Any] = ({"document_id": document_id} if document_id is not None else
                                 {"from": format_time(since) if since else None,
                                  "until": format_time(until) if until else None})
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=".tmp-", suffix=".zip")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            _Writer(zf, evidence, tsa_ca).write(entries, batches, digests, selected_seqs, selection)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ExportResult(output, len(entries), len(selected_seqs), len(batches), len(digests), not_sealed)


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()[:16]


def _pem(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


class _Writer:
    """Writes the bundle's files, keeping each one's SHA-256."""

    def __init__(self, zf: zipfile.ZipFile, evidence: EvidenceStore,
                 tsa_ca: Sequence[x509.Certificate] | None) -> None:
        self.zf = zf
        self.evidence = evidence
        self.tsa_ca = list(tsa_ca) if tsa_ca else []
        self.files: dict[str, str] = {}

    def put(self, name: str, data: bytes) -> None:
        self.zf.writestr(name, data)
        self.files[name] = hashlib.sha256(data).hexdigest()

    def put_stream(self, name: str, source: IO[bytes]) -> None:
        digest = hashlib.sha256()
        with self.zf.open(name, "w", force_zip64=True) as out:
            for chunk in iter(lambda: source.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        self.files[name] = digest.hexdigest()

    def write(self, entries: list[dict[str, Any]], batches: list[Batch], digests: dict[str, int],
              selected: list[int], selection: dict[str, Any]) -> None:
        self.put("log/entries.jsonl", "".join(entry_line(f) + "\n" for f in entries).encode("utf-8"))
        signers: dict[str, dict[str, str]] = {}
        tsa_certs: dict[str, x509.Certificate] = {}
        batch_records = []
        for batch in batches:
            base = f"batches/{batch.id:06d}"
            self.put(f"{base}.statement", batch.statement())
            self.put(f"{base}.sig", batch.signature)
            certs = load_pem_chain(batch.signer_cert)
            fp = _fingerprint(certs[0])
            if fp not in signers:
                names = {"certificate": f"certs/signer-{fp}.pem", "public_key": f"certs/signer-{fp}.pub.pem"}
                self.put(names["certificate"], _pem(certs[:1]))
                self.put(names["public_key"], certs[0].public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
                if len(certs) > 1:
                    names["chain"] = f"certs/signer-{fp}-chain.pem"
                    self.put(names["chain"], _pem(certs[1:]))
                signers[fp] = names
            record: dict[str, Any] = {
                "id": batch.id, "first_seq": batch.first_seq, "last_seq": batch.last_seq,
                "merkle_root": batch.merkle_root, "algorithm": batch.algorithm,
                "sealed_at": format_time(batch.sealed_at), "statement": f"{base}.statement",
                "signature": f"{base}.sig", "signer_certificate": signers[fp]["certificate"],
                "signer_chain": signers[fp].get("chain"), "public_key": signers[fp]["public_key"],
                "timestamp_token": None,
            }
            if batch.timestamp_token is not None:
                self.put(f"{base}.tst", batch.timestamp_token)
                record["timestamp_token"] = f"{base}.tst"
                for cert in _token_certificates(batch.timestamp_token):
                    tsa_certs.setdefault(_fingerprint(cert), cert)
            batch_records.append(record)
        for fp, cert in tsa_certs.items():
            self.put(f"certs/tsa-{fp}.pem", _pem([cert]))
        roots = [c for c in self.tsa_ca if c.subject == c.issuer]
        intermediates = [c for c in self.tsa_ca if c.subject != c.issuer]
        if roots:
            self.put("certs/tsa-ca-roots.pem", _pem(roots))
        if intermediates:
            self.put("certs/tsa-ca-intermediates.pem", _pem(intermediates))
        for digest in sorted(digests):
            with self.evidence.open(digest) as fh:
                self.put_stream(f"evidence/{digest}", fh)
        self.put("tools/check_log.py", Path(standalone.__file__).read_bytes())
        script = _openssl_script(batch_records, bool(roots), bool(intermediates))
        self.put("tools/openssl-checks.sh", script.encode("utf-8"))
        readme = _readme(batch_records, bool(roots), bool(intermediates), len(digests), selection)
        self.put("README.txt", readme.encode("utf-8"))
        manifest = {
            "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION,
            "created": format_time(dt.datetime.now(dt.UTC)),
            "selection": selection, "selected_entries": selected,
            "entries": len(entries), "batches": batch_records,
            "files": dict(sorted(self.files.items())),
        }
        self.put("manifest.json", (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        sums = "".join(f"{digest}  {name}\n" for name, digest in sorted(self.files.items()))
        self.zf.writestr("SHA256SUMS", sums.encode("utf-8"))


def _token_certificates(token: bytes) -> list[x509.Certificate]:
    from rfc3161_client import decode_timestamp_response

    try:
        response = decode_timestamp_response(wrap_token(token))
        return [x509.load_der_x509_certificate(der) for der in response.signed_data.certificates]
    except ValueError:
        return []


def _openssl_script(batches: list[dict[str, Any]], roots: bool, intermediates: bool) -> str:
    lines = [
        "#!/bin/sh",
        "# Checks every batch signature and time-stamp of this bundle with openssl.",
        "# Run from the bundle's folder: sh tools/openssl-checks.sh",
        "# TSA_CA_ROOTS (and TSA_CA_INTERMEDIATES) may name your own copies of the TSA's CA certificates.",
        f'TSA_CA_ROOTS="${{TSA_CA_ROOTS:-{"certs/tsa-ca-roots.pem" if roots else "TSA-ROOT.pem"}}}"',
        f'TSA_CA_INTERMEDIATES="${{TSA_CA_INTERMEDIATES:-{"certs/tsa-ca-intermediates.pem" if intermediates else ""}}}"',
        "failed=0",
        ('check() { label="$1"; shift; if "$@" >/dev/null 2>&1; then echo "OK      $label"; '
         'else echo "BROKEN  $label"; failed=1; fi; }'),
        'untrusted() { if [ -n "$TSA_CA_INTERMEDIATES" ]; then echo "-untrusted $TSA_CA_INTERMEDIATES"; fi; }',
    ]
    for b in batches:
        lines.append(f'check "batch {b["id"]} signature" {_dgst_command(b)}')
        if b["timestamp_token"]:
            lines.append(f'check "batch {b["id"]} time-stamp" {_ts_command(b, "$TSA_CA_ROOTS", "$(untrusted)")}')
    lines += ['if [ "$failed" = 0 ]; then echo "all signatures and time-stamps verified"; fi', "exit $failed", ""]
    return "\n".join(lines)


def _dgst_command(b: dict[str, Any]) -> str:
    return (f"openssl dgst -sha256 {OPENSSL_OPTIONS.get(b['algorithm'], '')}-verify {b['public_key']} "
            f"-signature {b['signature']} {b['statement']}")


def _ts_command(b: dict[str, Any], roots: str, untrusted: str) -> str:
    extra = f" {untrusted}" if untrusted else ""
    return f"openssl ts -verify -data {b['signature']} -in {b['timestamp_token']} -token_in -CAfile {roots}{extra}"


def _readme(batches: list[dict[str, Any]], tsa_roots: bool, tsa_intermediates: bool, evidence_count: int,
            selection: dict[str, Any]) -> str:
    first = batches[0]
    stamped = next((b for b in batches if b["timestamp_token"]), None)
    what = (f"the document {selection['document_id']}" if "document_id" in selection
            else f"the period {selection.get('from') or 'start'} .. {selection.get('until') or 'now'} (UTC)")
    chain = f" -untrusted {first['signer_chain']}" if first.get("signer_chain") else ""
    out = [
        "AUDIT BUNDLE - edoc-connector exchange log",
        "=" * 42,
        "",
        f"This bundle holds the exchange log entries for {what}, with the evidence",
        "(the exact bytes exchanged), the signed and time-stamped seals over the log, and the",
        "certificates needed to check them. Everything can be checked offline with sha256sum,",
        "openssl and python3; nothing here needs the connector's software.",
        "",
        "Lines starting with '$' are commands; run them from this folder (where README.txt is).",
        "",
        "What proves what",
        "----------------",
        "- Each evidence file is named by its SHA-256; the log entry that names that digest",
        "  (log/entries.jsonl, field sha256) says what happened to those bytes and when.",
        "- Each entry carries the SHA-256 of its own content (entry_hash) and of the entry",
        "  before it (prev_hash); a batch's Merkle root covers all its entries' hashes.",
        "- The connector's key signed each batch's statement (batches/*.statement, which holds",
        "  the Merkle root), and a time-stamping authority (TSA) time-stamped that signature:",
        "  the entries existed, unchanged, no later than the time in the time-stamp.",
        "- The bundle holds whole batches, so entries of other documents sealed in the same",
        "  batches appear too (their evidence is not included).",
        "",
        "Step 1 - the bundle is complete and unchanged since it was exported",
        "",
        "  $ sha256sum -c --strict SHA256SUMS",
        "",
        "  Every line must end in OK. (This only shows the files are the ones exported; the",
        "  steps below show that what was exported is what the connector logged and sealed.)",
        "",
        "Step 2 - the signer certificate",
        "",
        f"  $ openssl x509 -in {first['signer_certificate']} -noout -subject -issuer -serial -dates -fingerprint -sha256",
        "",
        "  Compare the subject and fingerprint with the connector's certificate as the agency",
        "  published it. To check it chains to a root you trust (your own copy of the root):",
        "",
        f"  > openssl verify -CAfile YOUR-ROOT-CA.pem{chain} {first['signer_certificate']}",
        "",
        "Step 3 - every batch signature (and time-stamp)",
        "",
        "  $ sh tools/openssl-checks.sh",
        "",
        "  It runs, for every batch, commands like these (here for the first batch):",
        "",
        f"  $ {_dgst_command(first)}",
        "",
        "  which prints 'Verified OK'. The public key file is the certificate's key, extracted:",
        f"  'openssl x509 -in {first['signer_certificate']} -pubkey -noout' prints the same key.",
    ]
    if stamped is not None:
        roots = "certs/tsa-ca-roots.pem" if tsa_roots else "TSA-ROOT.pem"
        untrusted = "-untrusted certs/tsa-ca-intermediates.pem" if tsa_intermediates else ""
        out += [
            "",
            "  and for its time-stamp (the token covers the .sig file):",
            "",
            f"  $ {_ts_command(stamped, roots, untrusted)}",
            f"  $ openssl ts -reply -in {stamped['timestamp_token']} -token_in -text",
            "",
            "  The first prints 'Verification: OK'; the second shows the time ('Time stamp:') and",
            "  the message imprint (the SHA-256 of the .sig file: compare with",
            f"  'sha256sum {stamped['signature']}').",
            "",
            ("  certs/tsa-ca-roots.pem is the TSA's root as the operator configured it; compare its\n"
             "  fingerprint with the one the TSA publishes, or set TSA_CA_ROOTS to your own copy:\n"
             "  TSA_CA_ROOTS=/path/to/root.pem sh tools/openssl-checks.sh" if tsa_roots else
             "  Put the TSA's root certificate, obtained from the TSA, in this folder as\n"
             "  TSA-ROOT.pem (or set TSA_CA_ROOTS=/path/to/root.pem) before running the script."),
        ]
    else:
        out += ["", "  (No batch in this bundle carries a time-stamp.)"]
    out += [
        "",
        "Step 4 - the log: entry hashes, links and Merkle roots match the signed statements",
        "",
        "  $ python3 tools/check_log.py .",
        "",
        "  tools/check_log.py uses only Python's standard library; read it before running it. The",
        "  rules it applies are also written at its top, so they can be checked independently.",
        "",
        "Step 5 - the evidence files",
        "",
        "  $ for f in evidence/*; do [ -e \"$f\" ] || continue; echo \"$(basename \"$f\")  $f\"; done | sha256sum -c --strict",
        "",
        f"  There are {evidence_count} evidence file(s); each must match its own name. Find the",
        "  entry for one with: grep <sha256> log/entries.jsonl",
        "",
        "manifest.json lists the selection, the selected entries' seq numbers and every batch.",
        "",
    ]
    return "\n".join(out)


# ---------------------------------------------------------------------- checking


def verify_bundle(path: Path, *, tsa_ca: Sequence[x509.Certificate] | None = None,
                  trust: TrustStore | None = None) -> VerifyReport:
    """Check a bundle (ZIP or extracted folder): every file against the manifest and
    SHA256SUMS, the log segment, each statement, signature and time-stamp, the evidence."""
    report = VerifyReport()
    path = Path(path)
    if path.is_dir():
        _verify_dir(path, report, tsa_ca, trust)
        return report
    with tempfile.TemporaryDirectory(prefix="audit-bundle-") as tmp:
        if _unpack(path, Path(tmp), report):
            _verify_dir(Path(tmp), report, tsa_ca, trust)
    return report


def _unpack(path: Path, target: Path, report: VerifyReport) -> bool:
    """Unpack safely (no absolute or parent paths, no links, a size bound); False when unusable."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if sum(i.file_size for i in infos) > MAX_UNPACKED:
                report.add(f"bundle {path}", "declares more than 64 GiB of content; not unpacked")
                return False
            seen: set[str] = set()
            for info in infos:
                name = info.filename
                if info.is_dir():
                    continue
                pure = PurePosixPath(name)
                if name in seen or pure.is_absolute() or ".." in pure.parts or "\\" in name or not name:
                    report.add(f"bundle file {name}", "unsafe or duplicated name in the ZIP; not unpacked")
                    continue
                seen.add(name)
                dest = target.joinpath(*pure.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
                except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                    report.add(f"bundle file {name}", f"damaged inside the ZIP ({_zip_reason(exc)})")
                    dest.unlink(missing_ok=True)
    except (zipfile.BadZipFile, OSError) as exc:
        report.add(f"bundle {path}", f"not a readable ZIP file ({exc})")
        return False
    return True


def _zip_reason(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__


def _verify_dir(root: Path, report: VerifyReport, tsa_ca: Sequence[x509.Certificate] | None,
                trust: TrustStore | None) -> None:
    present = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    actual = {name: standalone.sha256_file(root / name) for name in present}
    manifest = _read_manifest(root, report)
    listed = _read_sums(root, report)
    files: dict[str, str] = manifest.get("files", {})
    for name in present:
        if name == "SHA256SUMS":
            continue
        if name not in listed:
            report.add(f"bundle file {name}", "not listed in SHA256SUMS (added to the bundle?)")
        if name != "manifest.json" and files and name not in files:
            report.add(f"bundle file {name}", "not listed in manifest.json (added to the bundle?)")
        sums_differ = name in listed and listed[name][0] != actual[name]
        manifest_differs = name in files and files[name] != actual[name]
        if sums_differ and name in files and not manifest_differs:  # the file is right: the line was changed
            report.add(f"bundle file SHA256SUMS line {listed[name][1]}",
                       f"the digest of {name} does not match the file (SHA256SUMS was altered)")
        elif sums_differ or manifest_differs:
            against = " and ".join(w for w, bad in (("SHA256SUMS", sums_differ), ("manifest.json", manifest_differs))
                                   if bad)
            report.add(f"bundle file {name}", f"its SHA-256 differs from {against}: the file was altered")
    for name in sorted(set(listed) | set(files)):
        if name not in actual:
            report.add(f"bundle file {name}", "listed in the bundle's manifest but missing")
    counts = standalone.check_bundle_dir(root, report.add)
    report.entries = counts["entries"]
    report.evidence_files = counts["evidence"]
    if not manifest:
        return
    ca = list(tsa_ca) if tsa_ca else _bundle_tsa_ca(root)
    if ca and not tsa_ca:
        report.notes.append("time-stamps were checked against the TSA CA certificates included in the bundle "
                            "(certs/tsa-ca-*.pem); compare their fingerprints with the TSA's published ones")
    for number, record in enumerate(manifest.get("batches", []), 1):
        report.batches += 1
        problem = _batch_record_problem(record, number)
        if problem is not None:
            if not standalone.batch_record_problem(record):  # else check_bundle_dir reported it
                report.add("bundle file manifest.json", problem)
            continue
        try:
            batch, signature, statement = _bundle_batch(root, record)
        except (OSError, ValueError) as exc:  # a named file is missing, outside the bundle or not text
            report.add("bundle file manifest.json", f"batch {record['id']} cannot be read: {exc}")
            continue
        stamp = record.get("timestamp_token")
        check_batch(batch, f"bundle file {record['signature']}", report, tsa_ca=ca or None, trust=trust,
                    require_timestamps=False, signature=signature, statement=statement,
                    stamp_where=f"bundle file {stamp}" if stamp else None)
    if report.timestamps_unchecked:
        report.notes.append(f"{report.timestamps_unchecked} time-stamp(s) were read but NOT verified: give the "
                            "TSA's CA certificates (--tsa-ca)")


def _read_manifest(root: Path, report: VerifyReport) -> dict[str, Any]:
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}  # reported by the file check and by check_bundle_dir
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        report.add("bundle file manifest.json", "is not an edoc-connector audit bundle manifest")
        return {}
    for name, problem in _manifest_problems(manifest):
        if name not in _CHECKED_BY_STANDALONE:  # those it reports itself
            report.add("bundle file manifest.json", problem)
        manifest[name] = _MANIFEST_FALLBACK.get(name)  # go on without the unreadable field
    return manifest


#: Manifest fields tools/check_log.py (``check_bundle_dir``) checks and reports.
_CHECKED_BY_STANDALONE = ("batches", "selected_entries")


#: What the checks use in place of an unreadable manifest field (reported).
_MANIFEST_FALLBACK: dict[str, Any] = {"batches": [], "files": {}, "selected_entries": []}
_BATCH_TEXT = ("statement", "signature", "signer_certificate", "public_key", "algorithm")
_BATCH_OPTIONAL_TEXT = ("signer_chain", "timestamp_token")


def _manifest_problems(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, problem) for each top-level manifest field of the wrong type or form."""
    found: list[tuple[str, str]] = []

    def bad(name: str, expected: str) -> None:
        shown = describe_value(manifest[name]) if name in manifest else "missing"
        found.append((name, f"field {name} is {shown}, not {expected}"))

    if manifest.get("version") != BUNDLE_VERSION or isinstance(manifest.get("version"), bool):
        bad("version", f"{BUNDLE_VERSION} (the bundle format this connector writes)")
    created = manifest.get("created")
    if not isinstance(created, str) or not standalone.is_time(created):
        bad("created", "a UTC time like 2026-01-31T08:00:00.000000Z")
    if not isinstance(manifest.get("selection"), dict):
        bad("selection", "an object")
    selected = manifest.get("selected_entries")
    if not isinstance(selected, list) or not all(standalone.is_seq(s) for s in selected):
        bad("selected_entries", "a list of entry seq numbers")
    entries = manifest.get("entries")
    if not isinstance(entries, int) or isinstance(entries, bool) or entries < 0:
        bad("entries", "a number of entries")
    if not isinstance(manifest.get("batches"), list):
        bad("batches", "a list of batch records")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(d, str) and standalone.is_digest(d) for d in files.values()):
        bad("files", "an object of file names and their lowercase hex SHA-256")
    return found


def _batch_record_problem(record: Any, number: int) -> str | None:
    """Why the ``number``-th batch record of the manifest cannot be used, or None."""
    if not isinstance(record, dict):
        return f"batch record {number} is not an object"
    f = FieldDecoder(record)
    for name in ("id", "first_seq", "last_seq"):
        f.integer(name)
    f.digest("merkle_root")
    if not isinstance(record.get("sealed_at"), str) or not standalone.is_time(record["sealed_at"]):
        f.fail("sealed_at", "a UTC time like 2026-01-31T08:00:00.000000Z")
    for name in _BATCH_TEXT:
        f.text(name, required=True)
    for name in _BATCH_OPTIONAL_TEXT:
        f.text(name, required=False)
    if not f.problems:
        return None
    label = record["id"] if "id" not in f.bad else number
    return f"batch {label}: {'; '.join(f.problems)}"


def _read_sums(root: Path, report: VerifyReport) -> dict[str, tuple[str, int]]:
    """name -> (digest, line number) from SHA256SUMS."""
    sums: dict[str, tuple[str, int]] = {}
    try:
        text = (root / "SHA256SUMS").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        report.add("bundle file SHA256SUMS", "missing or unreadable")
        return sums
    for number, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest) or not name:
            report.add(f"bundle file SHA256SUMS line {number}", "not a 'sha256  name' line")
            continue
        sums[name] = (digest, number)
    return sums


def _bundle_tsa_ca(root: Path) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    for name in ("certs/tsa-ca-roots.pem", "certs/tsa-ca-intermediates.pem"):
        path = root / name
        if path.is_file():
            try:
                found += x509.load_pem_x509_certificates(path.read_bytes())
            except ValueError:
                pass  # its digest check reports the damage
    return found


def _bundle_batch(root: Path, record: dict[str, Any]) -> tuple[Batch, bytes, bytes]:
    def read(name: str) -> bytes:
        return standalone.bundle_path(root, name).read_bytes()

    signature = read(record["signature"])
    statement = read(record["statement"])
    cert_pem = read(record["signer_certificate"]).decode("ascii")
    if record.get("signer_chain"):
        cert_pem += read(record["signer_chain"]).decode("ascii")
    token = read(record["timestamp_token"]) if record.get("timestamp_token") else None
    batch = Batch(record["id"], record["first_seq"], record["last_seq"], record["merkle_root"],
                  signature, cert_pem, record["algorithm"], token, parse_time(record["sealed_at"]))
    return batch, signature, statement


__all__ = ["ExportResult", "export_bundle", "verify_bundle"]
