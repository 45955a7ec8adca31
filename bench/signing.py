"""Benchmark: build + sign and parse + validate + verify of an edXML document, and a 500 MB sign.

Prints, as lines a script can read (the last lines of the output):
    ratio sign <v> target 0.8                   our build + sign rate / raw RSA-2048 sign rate
    ratio verify <v> target 1.0                 our parse + validate + verify rate / python-xmlsec
                                                verify-only rate
    peak_rss_mb sign-<size>MB <v> limit 200     peak RSS of the process that signed a document
                                                carrying a <size> MB attachment

Baselines are measured in the same run, on the same key and the same document, so the ratios
hold on a noisy or slow machine too:
- raw sign: ``cryptography``'s RSA-2048 PKCS#1 v1.5 SHA-256 sign of the document's unsigned
  bytes (about 6 KB): the physical limit of any signer (one private-key operation);
- xmlsec verify-only: python-xmlsec (libxmlsec1, C) verifying the Signature node of a tree
  parsed once, with the signer's public key loaded once from its certificate (no chain, no
  parse, no model): the fastest a verifier can go in this process.
signxml's sign rate and xmlsec's parse + verify rates (signer key, and trust store + chain)
are printed for reference; they are not in any ratio. So is the C floor of a verify: the
library calls any parse + validate + verify of this document makes (lxml parse, exclusive C14N
of the whole tree, the XSD, one RSA verify) with no Python around them, against xmlsec's
verify-only rate; what is left of the target after it is the budget of all the Python code.

Measurements are interleaved round by round (raw, ours, ..., then again), ``--runs`` rounds of
``--seconds`` per contender. Each ratio is the median over the rounds of the ratio within the
round (ours against its baseline measured moments apart), so a noisy stretch of this shared
machine weighs on both sides of a ratio at once, and one lucky or unlucky round does not decide
it; the spread over the rounds is printed with it. The absolute rates shown are each
contender's best round.

The document is ``sample_edoc()`` as it is: a công văn with its one-page PDF (664 bytes),
packaged as ``--packaging`` (default zip, as the VNPT builder sends it): about 6 KB unsigned,
about 10.5 KB signed (the signature carries the signer's and the issuing CA's certificates).
The key is loaded once (``load_signing_key``), the model is built once, the trust store is
loaded once; each iteration is one ``sign(doc, key, BytesIO())`` or one
``verify(signed_bytes, TrustOptions(store))``.

The large document is signed in a fresh child process (so its peak RSS is its own) with its
attachment a ``FileData`` of ``--size-mb`` MB of random bytes; the result is then checked with
``xmlsec1 --verify`` against the dev root (trusted) and issuing CA (untrusted), outside this
process. ``--profile`` adds a cProfile of the 5 KB build + sign and verify (top functions by
own time, in µs per document).

Usage: python bench/signing.py [--seconds 0.5] [--runs 11] [--size-mb 500] [--packaging zip|plain]
                               [--profile] [--workdir DIR] [--xmlsec1-timeout 300]
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import make_payload, peak_rss_mb  # noqa: E402

AGENCY = "000.00.00.H16"
CHUNK = 1 << 20
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"


# --------------------------------------------------------------------------- set-up


def load_key(pki):
    """The H16 agency's signing key, loaded once as the connector loads it from configuration."""
    from connector.signing.keys import load_signing_key

    agency = pki.agencies[AGENCY]
    return load_signing_key(
        {"type": "pem", "key": str(agency.key_path), "cert": str(agency.cert_path), "chain": str(pki.chain_path)}
    )


def small_document(packaging: str):
    from connector.edxml.samples import sample_edoc

    doc = sample_edoc()
    doc.attachments[0].packaging = packaging
    return doc.with_manifest()






# --------------------------------------------------------------------------- timing


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over a loop of about ``seconds``."""
    clock = time.perf_counter
    n = 0
    start = clock()
    deadline = start + seconds
    while True:
        fn()
        n += 1
        now = clock()
        if now >= deadline:
            return n / (now - start)


def round_rates(contenders: dict[str, Callable[[], object]], seconds: float, runs: int) -> dict[str, list[float]]:
    """The rate of each contender in each of ``runs`` interleaved rounds (after a short warm-up)."""
    for fn in contenders.values():
        for _ in range(5):
            fn()
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, fn in contenders.items():
            rates[name].append(rate(fn, seconds))
    return rates


def paired_ratio(ours: list[float], baseline: list[float]) -> tuple[float, float, float]:
    """Median, lowest and highest over the rounds of ours / baseline within each round."""
    ratios = sorted(o / b for o, b in zip(ours, baseline, strict=True))
    return statistics.median(ratios), ratios[0], ratios[-1]


def profile(label: str, fn: Callable[[], object], iterations: int, top: int = 10) -> None:
    """cProfile ``iterations`` warm calls of ``fn``; print the top functions by own time, per call of fn."""
    for _ in range(5):
        fn()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(iterations):
        fn()
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt / iterations * 1e6  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, _where(filename, line, func)))
    rows.sort(reverse=True)
    print(f"profile {label}: {iterations} calls, {total:.0f} µs per call under cProfile (top {top} by own time)")
    print(f"  {'own µs':>8} {'cum µs':>8} {'calls':>7}  function   (µs and calls per {label})")
    for tt, ct, nc, where in rows[:top]:
        print(f"  {tt / iterations * 1e6:8.1f} {ct / iterations * 1e6:8.1f} {nc / iterations:7.1f}  {where}")
    ours = sorted(((ct, nc, w) for tt, ct, nc, w in rows if w.startswith("connector/")), reverse=True)
    print(f"  connector/ functions by cumulative time (top {top}):")
    for ct, nc, where in ours[:top]:
        print(f"  {'':8} {ct / iterations * 1e6:8.1f} {nc / iterations:7.1f}  {where}")


def breakdown(pki, key, doc, signed: bytes, store, rates: dict[str, float]) -> None:
    """Time the pieces of sign and verify one by one, without a profiler (which inflates Python code).

    Each piece goes through a public function of connector/; a piece whose function has changed
    shape is reported as n/a instead of stopping the benchmark.
    """
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from lxml import etree

    from connector.edxml.build import write_canonical
    from connector.edxml.parse import parse
    from connector.edxml.validate import validate_tree
    from connector.signing.sign import document_digest, signature_element
    from connector.signing.trust import validate_chain

    moment = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    leaf, issuing = key.certificate, pki.issuing_ca.certificate
    tree = etree.fromstring(signed)
    signature_value = key.sign(b"x" * 1200)
    public = leaf.public_key()
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

    def close(parsed) -> None:
        parsed.close()

    pieces: list[tuple[str, Callable[[], object]]] = [
        ("sign  | write_canonical(doc) (one build, no signature)", lambda: write_canonical(doc, io.BytesIO())),
        ("sign  | document_digest(doc)", lambda: document_digest(doc)),
        ("sign  | signature_element(key, digest, moment) (RSA included)",
         lambda: signature_element(key, b"\0" * 32, moment)),
        ("sign  | key.sign(SignedInfo-sized bytes) (PemKey wrapper)", lambda: key.sign(b"x" * 1200)),
        ("verify| lxml etree.fromstring(signed)", lambda: etree.fromstring(signed)),
        ("verify| parse(signed, validate=False) (read + model)", lambda: close(parse(signed, validate=False))),
        ("verify| parse(signed) (read + model + validate)", lambda: close(parse(signed))),
        ("verify| validate_tree(pre-parsed tree)", lambda: validate_tree(tree)),
        ("verify| validate_chain(leaf, [issuing], store)", lambda: validate_chain(leaf, [issuing], at=moment, store=store)),
        ("verify| RSA-2048 public verify (cryptography)", lambda: public.verify(signature_value, b"x" * 1200, pkcs1, sha256)),
        ("verify| leaf DER encode + x509.load_der_x509_certificate", lambda: _load_der(leaf)),
        ("verify| etree.tostring(tree, method=c14n, exclusive)", lambda: etree.tostring(tree, method="c14n", exclusive=True)),
        ("verify| every element's tag and text, read once (the floor of any Python walk)",
         lambda: [(e.tag, e.text) for e in tree.iter()]),
    ]
    print("breakdown (no profiler; best of 3 runs of 0.3 s), µs per call:")
    print(f"  {1e6 / rates['raw']:8.0f}  raw RSA-2048 sign            | {1e6 / rates['sign']:8.0f}  ours build + sign")
    print(f"  {1e6 / rates['xmlsec']:8.0f}  xmlsec verify-only           | {1e6 / rates['verify']:8.0f}  ours verify")
    for label, fn in pieces:
        try:
            fn()
            micros = 1e6 / max(rate(fn, 0.3) for _ in range(3))
            print(f"  {micros:8.1f}  {label}")
        except Exception as exc:  # noqa: BLE001 - the connector is moving; report and go on
            print(f"  {'n/a':>8}  {label}: {type(exc).__name__}: {exc}")


def _load_der(cert) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    x509.load_der_x509_certificate(cert.public_bytes(Encoding.DER))


def _where(filename: str, line: int, func: str) -> str:
    if filename == "~":
        return func  # a builtin: "<method 'sign' of ...>"
    path = Path(filename)
    try:
        shown = str(path.resolve().relative_to(ROOT))
    except ValueError:
        parts = path.parts
        shown = "/".join(parts[parts.index("site-packages") + 1:]) if "site-packages" in parts else path.name
    return f"{shown}:{line}({func})"


# --------------------------------------------------------------------------- 5 KB document


def small_benchmarks(pki, args) -> dict[str, float]:
    import xmlsec
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from lxml import etree
    from signxml import XMLSigner
    from signxml.algorithms import SignatureConstructionMethod

    from connector.edxml.build import to_bytes
    from connector.signing.sign import sign
    from connector.signing.trust import TrustStore
    from connector.signing.verify import TrustOptions, verify

    agency = pki.agencies[AGENCY]
    key = load_key(pki)
    doc = small_document(args.packaging)
    unsigned = to_bytes(doc)
    out = io.BytesIO()
    sign(doc, key, out)
    signed = out.getvalue()
    print(f"document: sample_edoc(), {doc.attachments[0].size} B PDF attached ({args.packaging} packaging), "
          f"{len(unsigned)} B unsigned, {len(signed)} B signed")

    # -- sign --------------------------------------------------------------------------
    private = agency.private_key()
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

    def raw_sign() -> None:
        private.sign(unsigned, pkcs1, sha256)

    def our_sign() -> None:
        sign(doc, key, io.BytesIO())

    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm=EXC_C14N,
    )
    certs = [key.certificate, *[c for c in key.chain if c.subject != c.issuer]]
    parser = etree.XMLParser(resolve_entities=False, huge_tree=False)

    def signxml_sign() -> None:
        root = etree.fromstring(unsigned, parser)
        etree.tostring(signer.sign(root, key=private, cert=certs))

    # -- verify ------------------------------------------------------------------------
    store = TrustStore.from_directory(pki.trust_dir)
    trust = TrustOptions(store)
    with verify(signed, trust) as checked:
        if checked.verdict.status != "valid":
            raise SystemExit(f"our verify does not accept our own signature: {checked.verdict}")

    public = xmlsec.Key.from_file(str(agency.cert_path), xmlsec.constants.KeyDataFormatCertPem)
    tree = etree.fromstring(signed)
    xmlsec.tree.add_ids(tree, ["Id"])
    node = xmlsec.tree.find_node(tree, xmlsec.constants.NodeSignature)

    def xmlsec_verify_only() -> None:
        ctx = xmlsec.SignatureContext()  # a context verifies once; the key is loaded once, above
        ctx.key = public
        ctx.verify(node)

    def xmlsec_parse_verify() -> None:
        root = etree.fromstring(signed)
        xmlsec.tree.add_ids(root, ["Id"])
        ctx = xmlsec.SignatureContext()
        ctx.key = public
        ctx.verify(xmlsec.tree.find_node(root, xmlsec.constants.NodeSignature))

    manager = xmlsec.KeysManager()
    manager.load_cert(str(pki.root_ca.cert_path), xmlsec.constants.KeyDataFormatPem, xmlsec.constants.KeyDataTypeTrusted)
    manager.load_cert(str(pki.issuing_ca.cert_path), xmlsec.constants.KeyDataFormatPem,
                      xmlsec.constants.KeyDataTypeNone)  # None = untrusted, as xmlsec1 --untrusted-pem

    def xmlsec_parse_verify_chain() -> None:
        root = etree.fromstring(signed)
        xmlsec.tree.add_ids(root, ["Id"])
        ctx = xmlsec.SignatureContext(manager)
        ctx.verify(xmlsec.tree.find_node(root, xmlsec.constants.NodeSignature))

    def our_verify() -> None:
        verify(signed, trust).close()

    for fn in (xmlsec_verify_only, xmlsec_verify_only, xmlsec_parse_verify, xmlsec_parse_verify_chain):
        fn()  # raises xmlsec.Error if the baseline would not verify our signature (or not repeatably)
    tampered = signed.replace(b"Nguy\xe1\xbb\x85n V\xc4\x83n An", b"Nguyen Van An")
    assert tampered != signed
    bad = etree.fromstring(tampered)
    xmlsec.tree.add_ids(bad, ["Id"])
    ctx = xmlsec.SignatureContext()
    ctx.key = public
    try:
        ctx.verify(xmlsec.tree.find_node(bad, xmlsec.constants.NodeSignature))
        raise SystemExit("xmlsec accepted a tampered document: the baseline is not verifying")
    except xmlsec.Error:
        pass

    # The C floor of a verify: the library calls any parse + validate + verify of this document
    # makes (parse, exclusive C14N of the whole tree, XSD, one RSA verify), with no Python
    # logic around them. Shows how much of the verify target is left to the Python code.
    from connector.edxml.validate import SCHEMA_PATH

    floor_parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                   remove_comments=True, collect_ids=False)
    schema = etree.XMLSchema(etree.parse(str(SCHEMA_PATH), floor_parser))
    signed_info = etree.tostring(tree.find(f".//{{{DSIG_NS}}}SignedInfo"), method="c14n", exclusive=True)
    signature_value = base64.b64decode(tree.findtext(f".//{{{DSIG_NS}}}SignatureValue"))
    leaf_public = key.certificate.public_key()
    leaf_public.verify(signature_value, signed_info, pkcs1, sha256)

    def c_floor() -> None:
        root = etree.fromstring(signed, floor_parser)
        etree.tostring(root, method="c14n", exclusive=True)
        schema.validate(root)
        leaf_public.verify(signature_value, signed_info, pkcs1, sha256)

    contenders = {
        "raw": raw_sign,
        "sign": our_sign,
        "signxml": signxml_sign,
        "xmlsec": xmlsec_verify_only,
        "verify": our_verify,
        "xmlsec-parse": xmlsec_parse_verify,
        "xmlsec-chain": xmlsec_parse_verify_chain,
        "floor": c_floor,
    }
    print(f"timing: {args.runs} interleaved rounds of {args.seconds:g} s per contender "
          f"(rates: best round; ratios: median of the rounds' ratios) ...", flush=True)
    rounds = round_rates(contenders, args.seconds, args.runs)
    rates = {name: max(values) for name, values in rounds.items()}
    print(f"raw RSA-2048 sign (cryptography, PKCS#1 v1.5 SHA-256)   {rates['raw']:7.0f} /s  "
          f"{1e6 / rates['raw']:6.0f} µs")
    print(f"ours: build + sign (connector.signing.sign)             {rates['sign']:7.0f} /s  "
          f"{1e6 / rates['sign']:6.0f} µs")
    print(f"signxml: parse + sign + serialize (reference)            {rates['signxml']:7.0f} /s  "
          f"{1e6 / rates['signxml']:6.0f} µs  ({rates['signxml'] / rates['raw']:.2f} of raw)")
    print(f"python-xmlsec verify-only (parsed once, signer key)      {rates['xmlsec']:7.0f} /s  "
          f"{1e6 / rates['xmlsec']:6.0f} µs")
    print(f"ours: parse + validate + verify (connector.signing.verify) {rates['verify']:5.0f} /s  "
          f"{1e6 / rates['verify']:6.0f} µs")
    print(f"C floor: lxml parse + C14N + XSD + RSA verify (no logic) {rates['floor']:5.0f} /s  "
          f"{1e6 / rates['floor']:6.0f} µs  ({rates['floor'] / rates['xmlsec']:.2f} of xmlsec verify-only)")
    print(f"python-xmlsec parse + verify (signer key, reference)     {rates['xmlsec-parse']:7.0f} /s  "
          f"{1e6 / rates['xmlsec-parse']:6.0f} µs  (ours = {rates['verify'] / rates['xmlsec-parse']:.2f} of it)")
    print(f"python-xmlsec parse + verify + chain (reference)         {rates['xmlsec-chain']:7.0f} /s  "
          f"{1e6 / rates['xmlsec-chain']:6.0f} µs  (ours = {rates['verify'] / rates['xmlsec-chain']:.2f} of it)")

    if args.profile:
        breakdown(pki, key, doc, signed, store, {n: rates[n] for n in ("raw", "sign", "xmlsec", "verify")})
        profile("build+sign", our_sign, args.profile_iterations)
        profile("verify", our_verify, args.profile_iterations)
    ratios = {"sign": paired_ratio(rounds["sign"], rounds["raw"]),
              "verify": paired_ratio(rounds["verify"], rounds["xmlsec"])}
    for name, (median, low, high) in ratios.items():
        print(f"{name} ratio over {args.runs} rounds: median {median:.2f}, lowest {low:.2f}, highest {high:.2f}")
    return {name: median for name, (median, _low, _high) in ratios.items()}


# --------------------------------------------------------------------------- large document


def child_sign(pki_dir: str, payload: str, out: str, packaging: str) -> dict:
    from connector.edxml.model import FileData
    from connector.signing.devpki import create_dev_pki
    from connector.signing.sign import sign

    pki = create_dev_pki(Path(pki_dir))  # loads the PKI the parent made
    key = load_key(pki)
    doc = small_document(packaging)
    attachment = doc.attachments[0]
    attachment.name = "large-attachment.pdf"
    attachment.data = FileData(Path(payload))
    attachment.size, attachment.sha256 = attachment.data.size, attachment.data.sha256
    doc.with_manifest()
    before = peak_rss_mb()
    start = time.perf_counter()
    info = sign(doc, key, out)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_mb": peak_rss_mb(), "rss_before_mb": before, "digest": info.digest}


def run_child(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if result.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def xmlsec1_verify(pki, path: Path, timeout: float) -> tuple[str, float, float, str]:
    """Run xmlsec1 --verify; returns (outcome, seconds, its peak RSS in MB, its output tail)."""
    command = [
        "xmlsec1", "--verify",
        "--trusted-pem", str(pki.root_ca.cert_path),
        "--untrusted-pem", str(pki.issuing_ca.cert_path),
        "--id-attr:Id", f"{DSIG_NS}:SignatureProperties",
        str(path),
    ]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
    if process.returncode < 0 and seconds >= timeout:
        outcome = f"did not finish within {timeout:.0f} s (killed)"
    elif process.returncode == 0 and "OK" in text:
        outcome = "OK"
    else:
        outcome = f"FAILED (exit {process.returncode})"
    tail = " | ".join(line for line in text.strip().splitlines()[-4:])
    return outcome, seconds, usage.ru_maxrss / 1024, tail


def large_benchmark(pki, pki_dir: Path, work: Path, args) -> tuple[float, bool]:
    size = args.size_mb * 1024 * 1024
    payload, signed = work / "payload.bin", work / "large-signed.edxml"
    make_payload(payload, size)
    result = run_child("sign", str(pki_dir), str(payload), str(signed), args.packaging)
    payload.unlink()  # the signed file holds it now; keep the disk footprint down
    megabytes = signed.stat().st_size / 1e6
    print(f"sign-{args.size_mb}MB: attachment {args.size_mb} MB ({args.packaging}), signed edXML {megabytes:.0f} MB, "
          f"{result['seconds']:.1f} s ({size / result['seconds'] / 1e6:.0f} MB/s of attachment), "
          f"child RSS {result['rss_before_mb']:.0f} MB before sign(), {result['rss_mb']:.0f} MB peak")
    outcome, seconds, rss, tail = xmlsec1_verify(pki, signed, args.xmlsec1_timeout)
    print(f"xmlsec1 --verify sign-{args.size_mb}MB: {outcome} in {seconds:.1f} s (xmlsec1 peak RSS {rss:.0f} MB)")
    if outcome != "OK":
        print(f"  xmlsec1 said: {tail}")
    return result["rss_mb"], outcome.startswith("FAILED")


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one timed run (default 0.5)")
    parser.add_argument("--runs", type=int, default=11, help="interleaved rounds; ratios are their median (default 11)")
    parser.add_argument("--size-mb", type=int, default=500, help="attachment of the large sign; 0 skips it")
    parser.add_argument("--packaging", choices=["zip", "plain"], default="zip")
    parser.add_argument("--profile", action="store_true", help="cProfile the 5 KB build+sign and verify")
    parser.add_argument("--profile-iterations", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--xmlsec1-timeout", type=float, default=300.0)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        print(json.dumps(child_sign(*rest)))
        return

    from connector.signing.devpki import create_dev_pki

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        pki_dir = work / "pki"
        pki = create_dev_pki(pki_dir)
        ratios = small_benchmarks(pki, args)
        peak, failed = (large_benchmark(pki, pki_dir, work, args) if args.size_mb > 0 else (None, False))
        print(f"ratio sign {ratios['sign']:.2f} target 0.8")
        print(f"ratio verify {ratios['verify']:.2f} target 1.0")
        if peak is not None:
            print(f"peak_rss_mb sign-{args.size_mb}MB {peak:.0f} limit 200")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
