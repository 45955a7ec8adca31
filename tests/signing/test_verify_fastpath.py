"""The faster examiner and verdict decide exactly as before, for every input.

Why: signature verification was restructured for speed (``connector/signing/verify.py``):
each parent of the Signature is read in one pass, a Signature of the shape our signer writes
is read in one walk (``_Shaped``), the Id search uses one XPath, and each certificate keeps
its last chain verdict. A verdict is a security decision, so none of that may change one:
the same status, reason, warnings, signer fields, signing time and decision, and the same
error for input that is not edXML. ``reference_verify.py`` is the module as it was before;
every test here runs both on the same bytes (both reading paths) and compares:

- our signed documents, with every kind of key (RSA, RSA-PSS, EC, SHA-1, other agency,
  expired, another root, a SHA-1 chain) and policy, at several times;
- the wrapping attacks and lexical variants of ``test_wrapping.py``;
- surgery on the Signature: prefixes and namespace layouts, inclusive C14N with inherited
  ``xml:`` attributes, whitespace, reordered or missing parts, duplicated or moved Ids, PIs
  inside leaves, odd signing times, other digests, each re-signed where that makes sense so
  the check under test is the only thing that differs;
- one-byte tamperings at many offsets;
- the real-world samples, as they are and re-signed by our signer;
- hypothesis-generated documents, signed.

And white-box: wherever ``_Shaped`` takes a Signature, what it gathers equals what the
general, element-by-element gathering returns. No timing is asserted here.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import random

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from lxml import etree

from connector.edxml.errors import EdxmlError
from connector.edxml.model import VN_TZ, Edoc
from connector.edxml.parse import parse
from connector.edxml.reader import read
from connector.edxml.samples import sample_edoc
from connector.signing import verify as fast
from connector.signing.dsig import (
    C14N,
    C14N_COMMENTS,
    DIGESTS,
    ENVELOPED,
    EXC_C14N,
    EXC_C14N_COMMENTS,
    RSA_PSS_SHA256,
    SHA1,
    SHA512,
    SIGNING_TIME_NS,
)
from connector.signing.keys import SoftwareKey
from connector.signing.policy import SenderRule, SignaturePolicy
from connector.signing.revocation import RevocationChecker
from connector.signing.trust import TrustStore
from tests.conftest import real_world_dir
from tests.edxml.strategies import messages
from tests.signing import reference_verify as reference
from tests.signing.test_wrapping import (
    INVALID,
    LEXICAL,
    _extra_reference,
    moved_element_header_reference,
)
from tests.support.dsig_tools import (
    DSIG,
    H16,
    READ_MODES,
    D,
    agency_key,
    credential_key,
    ec_agency_key,
    signature,
    signed_bytes,
    to_xml,
    tree,
    weak_key,
    xmlsec1_verify,
)

AT = dt.datetime.now(dt.UTC).replace(microsecond=0)
S = f"{{{SIGNING_TIME_NS}}}"


# --------------------------------------------------------------------------- comparing


def outcome(module, data, trust, read_mode: str = "memory", *, mode: str = "require",
            weak_for: str | None = None, at: dt.datetime | None = AT):
    """Everything a caller sees of one verify: the verdict (all fields), the decision and the
    model; or the error for input that is not edXML."""
    senders = {weak_for: SenderRule(mode, allow_weak=True)} if weak_for else {}
    policy = SignaturePolicy(SenderRule(mode), senders)
    try:
        with module.verify(data, trust, policy=policy, at=at, limits=READ_MODES[read_mode]) as result:
            return result.verdict.to_dict(), result.decision, result.parsed.message
    except EdxmlError as exc:
        return "not edXML", str(exc)
    except Exception as exc:  # noqa: BLE001 - a crash (a bug of its own) must at least be the same crash
        return "crash", type(exc).__name__, str(exc)


def same(data: bytes, trust, read_modes=tuple(READ_MODES), **kwargs) -> dict:
    """Assert both modules decide alike on ``data`` (each reading path); the verdict."""
    verdict = None
    for read_mode in read_modes:
        new, old = outcome(fast, data, trust, read_mode, **kwargs), outcome(reference, data, trust, read_mode, **kwargs)
        assert new == old, read_mode
        if verdict is None and isinstance(new[0], dict):
            verdict = new[0]
    assert_shape_agrees(data)
    return verdict or {"status": new[0]}


def facts(module, data: bytes) -> tuple:
    """What the examiner kept from the in-memory tree (SignedInfo's canonical form only when
    the examination went through: the new module reads it before the references)."""
    examiner = module._Examiner()
    read(data, on_tree=examiner).close()
    early = examiner.early
    return ((early.status, early.reason) if early else None, None if early else examiner.signed_info,
            examiner.method, examiner.value, [c.cert for c in examiner.facts], examiner.signing_time, examiner.weak)


def assert_shape_agrees(data: bytes) -> int:
    """Wherever ``_Shaped`` reads a Signature of ``data``, it gathers what the general
    gathering gathers; how many Signatures it read."""
    try:
        root = tree(data)
    except etree.XMLSyntaxError:
        return 0
    taken = 0
    for sig in root.iter(f"{D}Signature"):
        shaped = fast._Shaped.of(sig)
        if shaped is None:
            continue
        taken += 1
        general = fast._signature_children(sig)
        assert shaped.signature_children == general
        assert shaped.signed_info_children == fast._signed_info_children(general[0][0])
        wanted = {e.get("Id") for e in sig.iter(etree.Element)} | {"", "props", "nothing"}
        for value in sorted(w for w in wanted if w is not None):
            assert shaped.with_id(sig, value) == fast._with_id(sig, value), value
        for target in sig.iter(etree.Element):
            assert shaped.signing_times(target) == fast._signing_times(target)
    return taken


# --------------------------------------------------------------------------- fixtures and surgery


@pytest.fixture(scope="module")
def key(dev_pki):
    return agency_key(dev_pki)


@pytest.fixture(scope="module")
def signed(key):
    return signed_bytes(sample_edoc(), key)


@pytest.fixture(scope="module")
def trust(trust_store):
    return fast.TrustOptions(trust_store)


def _hash(uri: str, data: bytes) -> str:
    return base64.b64encode(hashlib.new(DIGESTS[uri][0], data).digest()).decode("ascii")


def _canonical(node, uri: str) -> bytes:
    exclusive = uri in (EXC_C14N, EXC_C14N_COMMENTS)
    comments = uri in (EXC_C14N_COMMENTS, C14N_COMMENTS)
    return etree.tostring(node, method="c14n", exclusive=exclusive, with_comments=comments)


def _set_transforms(reference_element, algorithms: list[str]) -> None:
    holder = reference_element.find(f"{D}Transforms")
    for child in list(holder):
        holder.remove(child)
    for algorithm in algorithms:
        etree.SubElement(holder, f"{D}Transform", Algorithm=algorithm)


def resign(root, key, *, c14n: str | None = None, digests: bool = True) -> None:
    """Recompute the digests of the one Signature's references (each with its own
    transforms and digest method) and its SignatureValue (with the CanonicalizationMethod of
    SignedInfo, or ``c14n`` which is set first), after whatever surgery came before."""
    sig = signature(root)
    signed_info = sig.find(f"{D}SignedInfo")
    if c14n is not None:
        signed_info.find(f"{D}CanonicalizationMethod").set("Algorithm", c14n)
    if digests:
        for ref in signed_info.findall(f"{D}Reference"):
            uri = ref.get("URI")
            transforms = [t.get("Algorithm") for t in ref.iter(f"{D}Transform")]
            method = ref.find(f"{D}DigestMethod").get("Algorithm")
            if uri == "":
                clone = tree(to_xml(root))
                clone_sig = signature(clone)
                tail, previous = clone_sig.tail, clone_sig.getprevious()
                clone_sig.getparent().remove(clone_sig)
                if tail:
                    previous.tail = (previous.tail or "") + tail
                data = _canonical(clone.getroottree(), transforms[-1] if len(transforms) > 1 else C14N)
            else:
                target = next(e for e in sig.iter(etree.Element) if e.get("Id") == uri[1:])
                data = _canonical(target, transforms[0] if transforms else C14N)
            ref.find(f"{D}DigestValue").text = _hash(method, data)
    canonical = _canonical(signed_info, signed_info.find(f"{D}CanonicalizationMethod").get("Algorithm"))
    sig.find(f"{D}SignatureValue").text = base64.b64encode(key.sign(canonical)).decode("ascii")


def _reprefixed(element, prefix: str | None, declare: bool = True):
    """A copy of ``element``'s subtree with the XMLDSig namespace under ``prefix`` (declared
    on the copy's top when ``declare``; else it must be in scope where it lands)."""
    nsmap = {prefix: DSIG} if declare else None

    def copy_of(node, top: bool):
        if not isinstance(node.tag, str):
            new = copy.deepcopy(node)
            new.tail = node.tail
            return new
        new = etree.Element(node.tag, dict(node.attrib), nsmap=nsmap if top else None)
        new.text, new.tail = node.text, node.tail
        for child in node:
            new.append(copy_of(child, False))
        return new

    return copy_of(element, True)


def _replace(old, new) -> None:
    new.tail = old.tail
    old.getparent().replace(old, new)


def _with_bytes(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


def _sig_part(root, path: str):
    return signature(root).find(path)


def _props(root):
    return signature(root).find(f"{D}Object/{D}SignatureProperties")


def _references(root):
    return signature(root).find(f"{D}SignedInfo").findall(f"{D}Reference")


def _ds_prefix(root, key):
    _replace(signature(root), _reprefixed(signature(root), "ds"))
    resign(root, key)


def _pretty(root, key):
    etree.indent(signature(root), space="  ", level=3)
    resign(root, key)


def _wrapped_base64(root, key):
    for element in signature(root).iter(f"{D}SignatureValue", f"{D}X509Certificate"):
        text = element.text
        element.text = "\n" + "\n".join(text[i:i + 64] for i in range(0, len(text), 64)) + "\n"


def _wrapped_digest_value(root, key):
    value = _references(root)[0].find(f"{D}DigestValue")
    value.text = "\n  " + value.text[:20] + "\n  " + value.text[20:] + "\n"
    resign(root, key, digests=False)


def _third_certificate(root, key, dev_pki):
    data = _sig_part(root, f"{D}KeyInfo/{D}X509Data")
    der = dev_pki.root_ca.certificate.public_bytes(Encoding.DER)
    etree.SubElement(data, f"{D}X509Certificate").text = base64.b64encode(der).decode("ascii")


def _no_subject_name(root, key):
    name = _sig_part(root, f"{D}KeyInfo/{D}X509Data/{D}X509SubjectName")
    name.getparent().remove(name)


def _issuer_serial(root, key):
    data = _sig_part(root, f"{D}KeyInfo/{D}X509Data")
    serial = etree.SubElement(data, f"{D}X509IssuerSerial")
    etree.SubElement(serial, f"{D}X509IssuerName").text = "CN=x"
    etree.SubElement(serial, f"{D}X509SerialNumber").text = "1"


def _props_reference_first(root, key):
    first, second = _references(root)
    first.addprevious(second)
    resign(root, key)


def _methods_swapped(root, key):
    signed_info = _sig_part(root, f"{D}SignedInfo")
    signed_info.insert(0, signed_info.find(f"{D}SignatureMethod"))
    resign(root, key)


def _digests(uri):
    def surgery(root, key):
        for ref in _references(root):
            ref.find(f"{D}DigestMethod").set("Algorithm", uri)
        resign(root, key, digests=uri in DIGESTS)
    return surgery


def _c14n_everywhere(uri, lang: bool = False):
    def surgery(root, key):
        if lang:
            root.set("{http://www.w3.org/XML/1998/namespace}lang", "vi")
            signature(root).getparent().set("{http://www.w3.org/XML/1998/namespace}space", "default")
        document, props = _references(root)
        _set_transforms(document, [ENVELOPED, uri])
        _set_transforms(props, [uri])
        resign(root, key, c14n=uri)
    return surgery


def _id_also_on(path):
    def surgery(root, key):
        props_id = _props(root).get("Id")
        (signature(root) if path is None else _sig_part(root, path)).set("Id", props_id)
        resign(root, key)
    return surgery


def _id_moved_to_property(root, key):
    props = _props(root)
    props[0].set("Id", props.attrib.pop("Id"))
    resign(root, key)


def _namespaced_id(root, key):
    props = _props(root)
    props.set("{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd}Id",
              props.attrib.pop("Id"))
    resign(root, key, digests=False)


def _pi_in(path, at: int = 10):
    def surgery(root, key):
        element = _sig_part(root, path)
        text = element.text
        element.text = text[:at]
        pi = etree.ProcessingInstruction("x", "y")
        pi.tail = text[at:]
        element.append(pi)
    return surgery


def _pi_after_signature(root, key):
    sig = signature(root)
    pi = etree.ProcessingInstruction("after", "signature")
    pi.tail, sig.tail = sig.tail, "\n"
    sig.addnext(pi)
    resign(root, key)


def _pi_between_children(root, key):
    _sig_part(root, f"{D}SignatureValue").addprevious(etree.ProcessingInstruction("between", ""))


def _signing_times(*texts, namespace: str = S):
    def surgery(root, key):
        holder = _props(root)[0]
        for child in list(holder):
            holder.remove(child)
        for text in texts:
            etree.SubElement(holder, f"{namespace}SigningTime").text = text
        resign(root, key)
    return surgery


def _no_tail(root, key):
    signature(root).tail = None
    resign(root, key)


def _text_of(path, text):
    def surgery(root, key):
        _sig_part(root, path).text = text
    return surgery


def _removed(path, then_resign: bool = True):
    def surgery(root, key):
        element = _sig_part(root, path)
        element.getparent().remove(element)
        if then_resign:
            resign(root, key, digests=False)
    return surgery


def _transforms_of(index, algorithms, then_resign: bool = True):
    def surgery(root, key):
        _set_transforms(_references(root)[index], algorithms)
        if then_resign:
            resign(root, key)
    return surgery


def _attribute(path, name, value):
    def surgery(root, key):
        _sig_part(root, path).set(name, value)
        resign(root, key, digests=False)
    return surgery


def _second(path):
    def surgery(root, key):
        element = _sig_part(root, path)
        element.addnext(copy.deepcopy(element))
    return surgery


def _reference_uri(index, uri):
    def surgery(root, key):
        if uri is None:
            del _references(root)[index].attrib["URI"]
        else:
            _references(root)[index].set("URI", uri)
        resign(root, key, digests=False)
    return surgery


def _no_references(root, key):
    for ref in _references(root):
        ref.getparent().remove(ref)
    resign(root, key, digests=False)


def _truncated_certificates(root, key):
    for element in signature(root).iter(f"{D}X509Certificate"):
        element.text = element.text[:11]


SI, SV, KI = f"{D}SignedInfo", f"{D}SignatureValue", f"{D}KeyInfo"
R1 = f"{SI}/{D}Reference"
X509 = f"{KI}/{D}X509Data/{D}X509Certificate"

#: name -> surgery on the signed tree (with the key that signed it)
SURGERY = {
    "as-signed": lambda root, key: None,
    "ds-prefix": _ds_prefix,
    "pretty-signature": _pretty,
    "wrapped-base64": _wrapped_base64,
    "wrapped-digest-value": _wrapped_digest_value,
    "no-subject-name": _no_subject_name,
    "issuer-serial": _issuer_serial,
    "props-reference-first": _props_reference_first,
    "methods-swapped": _methods_swapped,
    "sha512-digests": _digests(SHA512),
    "sha1-digests": _digests(SHA1),
    "unknown-digest": _digests("urn:x-digest"),
    "exclusive-with-comments": _c14n_everywhere(EXC_C14N_COMMENTS),
    "inclusive": _c14n_everywhere(C14N),
    "inclusive-xml-attributes": _c14n_everywhere(C14N, lang=True),
    "inclusive-with-comments-xml-attributes": _c14n_everywhere(C14N_COMMENTS, lang=True),
    "exclusive-xml-attributes": _c14n_everywhere(EXC_C14N, lang=True),
    "unknown-c14n": lambda root, key: resign(root, key, c14n="urn:x-c14n", digests=False),
    "unknown-signature-method": _attribute(f"{SI}/{D}SignatureMethod", "Algorithm", "urn:x-sig"),
    "id-on-signature-too": _id_also_on(None),
    "id-on-signed-info-too": _id_also_on(SI),
    "id-on-x509-data-too": _id_also_on(f"{KI}/{D}X509Data"),
    "id-moved-to-property": _id_moved_to_property,
    "namespaced-id": _namespaced_id,
    "pi-in-digest-value": _pi_in(f"{R1}/{D}DigestValue"),
    "pi-in-signature-value": _pi_in(SV),
    "pi-in-certificate": _pi_in(X509, 400),
    "pi-after-signature": _pi_after_signature,
    "pi-between-children": _pi_between_children,
    "two-signing-times": _signing_times("2020-01-01T00:00:00+07:00", AT.isoformat()),
    "bad-signing-time": _signing_times("yesterday"),
    "naive-signing-time": _signing_times(AT.replace(tzinfo=None).isoformat()),
    "signing-time-outside-validity": _signing_times("2001-01-01T00:00:00+07:00"),
    "signing-time-without-namespace": _signing_times(AT.isoformat(), namespace=""),
    "no-signing-time": _signing_times(),
    "no-tail": _no_tail,
    "empty-signature-value": _text_of(SV, ""),
    "garbage-signature-value": _text_of(SV, "!!!"),
    "short-signature-value": _text_of(SV, "QUJD"),
    "bad-padding-signature-value": _text_of(SV, "QUJDRA="),
    "garbage-digest-value": _text_of(f"{R1}/{D}DigestValue", "@@@"),
    "bad-padding-digest-value": _text_of(f"{R1}/{D}DigestValue", "QUJDRA="),
    "no-digest-method": _removed(f"{R1}/{D}DigestMethod"),
    "no-digest-value": _removed(f"{R1}/{D}DigestValue"),
    "no-transforms": _removed(f"{R1}/{D}Transforms"),
    "no-signature-value": _removed(SV, then_resign=False),
    "no-key-info": _removed(KI, then_resign=False),
    "no-object": _removed(f"{D}Object", then_resign=False),
    "inclusive-document-transform-only": _transforms_of(0, [ENVELOPED, C14N]),
    "enveloped-only": _transforms_of(0, [ENVELOPED]),
    "enveloped-not-first": _transforms_of(0, [EXC_C14N, ENVELOPED], then_resign=False),
    "three-document-transforms": _transforms_of(0, [ENVELOPED, EXC_C14N, EXC_C14N], then_resign=False),
    "two-props-transforms": _transforms_of(1, [EXC_C14N, EXC_C14N], then_resign=False),
    "no-props-transforms": _transforms_of(1, []),
    "two-signed-info": _second(SI),
    "two-signature-values": _second(SV),
    "two-key-infos": _second(KI),
    "two-c14n-methods": _second(f"{SI}/{D}CanonicalizationMethod"),
    "two-signature-methods": _second(f"{SI}/{D}SignatureMethod"),
    "two-digest-values": _second(f"{R1}/{D}DigestValue"),
    "two-digest-methods": _second(f"{R1}/{D}DigestMethod"),
    "no-references": _no_references,
    "external-uri": _reference_uri(1, "http://example.invalid/x"),
    "no-uri": _reference_uri(1, None),
    "relative-id-uri": _reference_uri(1, "props"),
    "dangling-id-uri": _reference_uri(1, "#nothing"),
    "uri-to-signature": _reference_uri(1, "#sig"),
    "truncated-certificates": _truncated_certificates,
}


def surgery_bytes(signed: bytes, key, name: str) -> bytes:
    root = tree(signed)
    if name == "uri-to-signature":
        signature(root).set("Id", "sig")
    SURGERY[name](root, key)
    return to_xml(root)


# --------------------------------------------------------------------------- the signer's shape


def test_our_signature_takes_the_one_walk_path(signed):
    """Control: the documents our signer writes are read by ``_Shaped`` (otherwise the
    equivalence tests below would only exercise the general gathering)."""
    assert fast._Shaped.of(signature(tree(signed))) is not None
    assert assert_shape_agrees(signed) == 1
    assert facts(fast, signed) == facts(reference, signed)
    assert facts(fast, signed)[0] is None


@pytest.mark.parametrize("name", sorted(SURGERY))
def test_surgery_on_the_signature_decides_alike(signed, key, trust, name):
    data = surgery_bytes(signed, key, name)
    verdict = same(data, trust)
    assert facts(fast, data) == facts(reference, data)
    if name == "as-signed":
        assert verdict["status"] == "valid"
    if name in ("ds-prefix", "pretty-signature", "wrapped-base64", "sha512-digests", "inclusive",
                "inclusive-xml-attributes", "id-moved-to-property", "props-reference-first", "methods-swapped",
                "no-tail", "pi-after-signature", "two-signing-times", "no-signing-time"):
        assert verdict["status"] == "valid", verdict["reason"]  # the surgery itself is harmless


def test_weak_digests_decide_alike_when_allowed(signed, key, trust):
    data = surgery_bytes(signed, key, "sha1-digests")
    assert same(data, trust, weak_for=H16)["status"] == "valid"
    assert same(data, trust)["status"] == "invalid"


def test_three_certificates_take_the_one_walk_path(signed, key, trust, dev_pki):
    root = tree(signed)
    _third_certificate(root, key, dev_pki)
    data = to_xml(root)
    assert assert_shape_agrees(data) == 1
    assert same(data, trust)["status"] == "valid"


def _ds_declared_on_root(signed, key) -> bytes:
    """Our signed document with the root also declaring the XMLDSig namespace as ``ds``
    (the Signature keeps its own default declaration), signed again."""
    data = _with_bytes(signed, b'<edXML xmlns="', f'<edXML xmlns:ds="{DSIG}" xmlns="'.encode())
    root = tree(data)
    resign(root, key)
    return to_xml(root)


def test_a_signature_whose_namespace_the_root_also_declares_verifies(signed, key, trust, dev_pki, tmp_path):
    """Taking the Signature out of the tree for the document digest and putting it back
    lets lxml move its elements onto the root's ``ds:`` declaration; what the Signature's own
    references and SignedInfo cover must be read before that. (The old module refused this
    correctly signed document with a digest mismatch on the signed properties.)"""
    data = _ds_declared_on_root(signed, key)
    run = xmlsec1_verify(data, tmp_path, dev_pki)
    assert run.returncode == 0, run.stderr
    for read_mode in READ_MODES:
        new = outcome(fast, data, trust, read_mode)
        assert new[0]["status"] == "valid", (read_mode, new[0])
    assert outcome(reference, data, trust)[0]["reason"].startswith("digest mismatch for reference #props-")


@pytest.mark.parametrize("layout", ["ds-declared-on-root-and-signature",
                                    "default-dsig-on-header", "ds-prefix-undeclared-on-signature"])
def test_namespace_layouts_decide_alike(signed, key, trust, layout):
    """The XMLDSig namespace declared elsewhere than on the Signature (the move that
    computes the document digest may then change prefixes: both versions move alike)."""
    root = tree(signed)
    if layout == "ds-prefix-undeclared-on-signature":
        data = _with_bytes(to_xml(root), b'<edXML xmlns="', f'<edXML xmlns:ds="{DSIG}" xmlns="'.encode())
        root = tree(data)
        _replace(signature(root), _reprefixed(signature(root), "ds", declare=False))
        resign(root, key)
        data = to_xml(root)
    elif layout == "ds-declared-on-root-and-signature":
        _replace(signature(root), _reprefixed(signature(root), "ds"))
        data = _with_bytes(to_xml(root), b'<edXML xmlns="', f'<edXML xmlns:ds="{DSIG}" xmlns="'.encode())
        root = tree(data)
        resign(root, key)
        data = to_xml(root)
    else:
        data = _with_bytes(to_xml(root), b"<edXML:edXMLHeader>", f'<edXML:edXMLHeader xmlns="{DSIG}">'.encode())
        root = tree(data)
        resign(root, key)
        data = to_xml(root)
    same(data, trust)
    assert facts(fast, data) == facts(reference, data)


# --------------------------------------------------------------------------- keys, certificates, policies, times


def _documents(dev_pki, odd_certs) -> dict:
    issuing = dev_pki.issuing_ca.certificate
    h16 = dev_pki.agencies[H16].private_key()
    keys = {
        "rsa": agency_key(dev_pki),
        "rsa-pss": agency_key(dev_pki, algorithm=RSA_PSS_SHA256),
        "ec": ec_agency_key(dev_pki, H16),
        "sha1-signature": weak_key(dev_pki),
        "other-agency": agency_key(dev_pki, "000.00.00.G22"),
        "expired": credential_key(dev_pki, dev_pki.expired),
        "revoked": credential_key(dev_pki, dev_pki.revoked),
        "another-root": SoftwareKey(h16, odd_certs.foreign_leaf, [odd_certs.foreign_root]),
        "sha1-chain": SoftwareKey(h16, odd_certs.sha1_leaf, [issuing]),
        "no-digital-signature": SoftwareKey(h16, odd_certs.no_digital_signature, [issuing]),
        "forged-issuer": SoftwareKey(h16, odd_certs.forged_leaf, [issuing]),
    }
    return {name: signed_bytes(sample_edoc(number=i + 1), key) for i, (name, key) in enumerate(keys.items())}


@pytest.fixture(scope="module")
def documents(dev_pki, odd_certs):
    return _documents(dev_pki, odd_certs)


@pytest.mark.parametrize("name", ["rsa", "rsa-pss", "ec", "sha1-signature", "other-agency", "expired", "revoked",
                                  "another-root", "sha1-chain", "no-digital-signature", "forged-issuer"])
def test_every_kind_of_key_decides_alike(documents, trust, name):
    data = documents[name]
    statuses = set()
    for kwargs in ({}, {"weak_for": H16}, {"mode": "if-present"}, {"mode": "record"},
                   {"at": AT + dt.timedelta(days=3650)}, {"at": AT - dt.timedelta(days=30)},
                   {"at": AT.astimezone(VN_TZ)}, {"at": None}):
        statuses.add(same(data, trust, **kwargs)["status"])
    if name == "rsa":
        assert "valid" in statuses and "expired" in statuses


def test_trust_stores_and_revocation_decide_alike(documents, trust_store, pki_server):
    stores = [fast.TrustOptions(trust_store), fast.TrustOptions(TrustStore.from_certificates([])),
              fast.TrustOptions(trust_store, RevocationChecker("hard-fail"))]
    for name in ("rsa", "revoked"):
        for options in stores + stores[::-1]:
            same(documents[name], options, read_modes=("memory",))


def test_the_last_chain_verdict_is_kept_per_store_minute_and_weak_allowance(documents, trust_store):
    """The per-certificate memo in front of the chain cache: any change of store, minute,
    weak allowance or KeyInfo certificates asks again, exactly as the cache's key did."""
    data = documents["rsa"]
    empty = fast.TrustOptions(TrustStore.from_certificates([]))
    full = fast.TrustOptions(trust_store)
    ahead = AT + dt.timedelta(days=3650)
    sequence = [(full, AT), (full, AT + dt.timedelta(seconds=59)), (full, AT + dt.timedelta(minutes=1)),
                (empty, AT), (full, AT), (full, ahead), (full, AT), (full, AT.astimezone(VN_TZ)),
                (full, AT.replace(tzinfo=None)), (full, AT)]
    statuses = []
    for options, at in sequence:
        for weak_for in (None, H16):
            statuses.append(same(data, options, read_modes=("memory",), at=at, weak_for=weak_for)["status"])
    assert {"valid", "untrusted", "expired"} <= set(statuses)
    root = tree(data)
    certificates = root.find(f".//{X509}").getparent()
    certificates.append(certificates[1])  # the signer's certificate after the CA's: other KeyInfo order
    same(to_xml(root), full, read_modes=("memory",))


# --------------------------------------------------------------------------- attacks, lexical forms, tamperings


@pytest.mark.parametrize("attack", sorted(INVALID))
def test_wrapping_attacks_decide_alike(signed, key, trust, attack):
    how, _ = INVALID[attack]
    assert same(how(signed, key), trust)["status"] == "invalid"


def test_other_wrapping_forms_decide_alike(signed, key, trust):
    same(moved_element_header_reference(signed, key), trust)
    assert same(_extra_reference(signed, key, None), trust)["status"] == "valid"


@pytest.mark.parametrize("form", sorted(LEXICAL))
def test_lexical_variants_decide_alike(signed, trust, form):
    assert same(LEXICAL[form](signed), trust)["status"] == "valid"


def _tampered(data: bytes, at: int, rng: random.Random) -> bytes:
    old = data[at:at + 1]
    if old.isalnum():
        new = b"B" if old != b"B" else b"C"
    else:
        new = rng.choice([b"x", b"0", b" ", b"<", b'"', b"="])
        if new == old:
            new = b"y"
    return data[:at] + new + data[at + 1:]


@pytest.mark.parametrize("part", range(4))
def test_one_byte_tamperings_decide_alike(signed, trust, part):
    """About 400 offsets over the whole document and, more densely, the Signature: each
    byte replaced (a letter by another, markup by something else)."""
    rng = random.Random(20261126 + part)
    start = signed.index(b"<Signature")
    offsets = sorted(set(range(0, len(signed), 61)) | set(range(start, len(signed), 19)))[part::4]
    statuses = set()
    for at in offsets:
        data = _tampered(signed, at, rng)
        statuses.add(same(data, trust, read_modes=("memory",) if at % 3 else tuple(READ_MODES))["status"])
    assert "invalid" in statuses and len(statuses) > 1


# --------------------------------------------------------------------------- real-world samples and generated documents


def test_real_world_samples_decide_alike(key, trust):
    checked = resigned = 0
    for path in sorted(real_world_dir().glob("*.edxml")):
        data = path.read_bytes()
        same(data, trust)
        checked += 1
        try:
            with parse(data) as parsed:
                message = parsed.message
                if not isinstance(message, Edoc):
                    continue
                ours = signed_bytes(message, key)
        except (EdxmlError, ValueError, TypeError):
            continue
        verdict = same(ours, trust)
        assert assert_shape_agrees(ours) == 1
        assert verdict["status"] in ("valid", "untrusted", "not edXML"), (path.name, verdict)
        resigned += 1
    assert checked >= 10 and resigned >= 3, (checked, resigned)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(message=messages())
def test_generated_documents_decide_alike(message, key, trust):
    if not isinstance(message, Edoc):
        return
    data = signed_bytes(message, key)
    assert assert_shape_agrees(data) == 1
    verdict = same(data, trust)
    assert verdict["status"] in ("valid", "untrusted"), verdict


# --------------------------------------------------------------------------- small pieces


def test_certificate_text_cache_reads_each_text_as_the_general_path(dev_pki):
    """The cache by text as written returns what decoding the whitespace-free text returns,
    for wrapped, padded, truncated and empty texts; long texts are not kept."""
    der = dev_pki.issuing_ca.certificate.public_bytes(Encoding.DER)
    encoded = base64.b64encode(der).decode("ascii")
    wrapped = "\n".join(encoded[i:i + 64] for i in range(0, len(encoded), 64))
    for text in (encoded, wrapped, f"  {encoded}\t", encoded[:11], "", None, "!!!!", "x" * (fast._BY_TEXT_LONGEST + 1)):
        for _ in range(2):
            got = fast._certificate_of(text)
            want = reference._certificate(reference._text(etree.fromstring(f"<a>{text or ''}</a>")))
            assert (got.cert if got else None) == (want.cert if want else None)
    assert ("x" * (fast._BY_TEXT_LONGEST + 1)) not in fast._BY_TEXT


def test_signature_checks_equal_the_general_dispatch(documents):
    """Each certificate's prepared checks accept exactly what the old dispatch accepted."""
    methods = sorted({*fast.SIGNATURE_METHODS, "urn:x-unknown"})
    for name in ("rsa", "rsa-pss", "ec", "sha1-signature"):
        examiner = fast._Examiner()
        read(documents[name], on_tree=examiner).close()
        for cert in examiner.facts:
            for method in methods:
                for value in (examiner.value, examiner.value[:-1] + b"\0", b"", b"\0" * 64):
                    expected = reference._signature_ok(cert.public_key, method, value, examiner.signed_info)
                    assert fast._verifies(cert, method, value, examiner.signed_info) == expected, (name, method)


# --------------------------------------------------------------------------- damaged input gives a verdict, not a crash


def _decodes_only_in_part(text: str) -> bool:
    """Whether this certificate text loads as DER but its key or names do not decode (what
    used to crash the verdict)."""
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
    except Exception:  # noqa: BLE001 - not DER at all: refused at load, as always
        return False
    try:
        cert.public_key()
        cert.subject.rfc4514_string()
        cert.issuer.rfc4514_string()
    except (ValueError, UnsupportedAlgorithm):
        return True
    return False


def _same_signed_content(text: str, original) -> bool:
    """Whether a damaged certificate text still carries the original's signed part and
    signature (base64 padding bits, or the signature BIT STRING's unused-bits count, changed:
    nothing the issuer signed or its signature)."""
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
        return (cert.tbs_certificate_bytes, cert.signature) == (original.tbs_certificate_bytes, original.signature)
    except ValueError:
        return False


def test_damaged_signer_certificates_give_a_verdict_not_a_crash(signed, trust):
    """Each character of the signer's certificate replaced in turn: whatever the damage, the
    answer is a verdict (valid only when what the issuer signed is intact), including for DER
    that loads but whose key or names
    do not decode (an unknown key type, a broken subject), which used to raise from the verdict."""
    start = signed.index(b"<X509Certificate>") + len(b"<X509Certificate>")
    end = signed.index(b"</X509Certificate>", start)
    original = x509.load_der_x509_certificate(base64.b64decode(signed[start:end]))
    partial = 0
    statuses = set()
    for at in range(start, end):
        new = b"B" if signed[at:at + 1] != b"B" else b"x"
        data = signed[:at] + new + signed[at + 1:]
        text = data[start:end].decode("ascii")
        partial += _decodes_only_in_part(text)
        with fast.verify(data, trust, at=AT) as result:
            status = result.verdict.status
        assert status != "valid" or _same_signed_content(text, original), (at, result.verdict)
        statuses.add(status)
    assert partial >= 5  # the damage that used to crash is among the cases
    assert {"invalid", "untrusted"} <= statuses


def test_content_libxml2_cannot_canonicalize_is_invalid_not_a_crash(signed, trust):
    """A relative namespace URI makes libxml2's C14N fail: in the signed properties, or in the
    document itself; either is refused with the reason, the document still read."""
    in_properties = _with_bytes(signed, f'xmlns="{SIGNING_TIME_NS}"'.encode(), b'xmlns="signing-time/1"')
    in_document = _with_bytes(signed, b"<edXML:Subject>", b'<edXML:Subject xmlns:n="notes/1" n:lang="vi">')
    for data, what in ((in_properties, "reference #props-"), (in_document, "the document ")):
        for read_mode in ("memory",):
            verdict = same(data, trust, read_modes=(read_mode,))
            assert verdict["status"] == "invalid", verdict
            assert verdict["reason"].startswith(what) and "cannot be canonicalized" in verdict["reason"], verdict
