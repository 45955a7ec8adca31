"""XMLDSig vocabulary: algorithm URIs and the pieces of a Signature element we write and read."""

from __future__ import annotations

import hashlib

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"

# Canonicalization
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_COMMENTS = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

# (exclusive?, with comments?) per canonicalization URI
C14N_METHODS: dict[str, tuple[bool, bool]] = {
    EXC_C14N: (True, False),
    EXC_C14N_COMMENTS: (True, True),
    C14N: (False, False),
    C14N_COMMENTS: (False, True),
}

# Digests: URI -> (hashlib name, strong?)
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
DIGESTS: dict[str, tuple[str, bool]] = {
    SHA1: ("sha1", False),
    SHA256: ("sha256", True),
    SHA384: ("sha384", True),
    SHA512: ("sha512", True),
}

# Signature methods: URI -> strong?
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
RSA_PSS_SHA256 = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SIGNATURE_METHODS: dict[str, bool] = {
    RSA_SHA1: False,
    RSA_SHA256: True,
    RSA_SHA384: True,
    RSA_SHA512: True,
    RSA_PSS_SHA256: True,
    ECDSA_SHA256: True,
}

PROPERTIES_TYPE = "http://www.w3.org/2000/09/xmldsig#SignatureProperties"
SIGNING_TIME_NS = "urn:edoc-connector:signature:1"


def new_digest(uri: str) -> "hashlib._Hash":
    """A hashlib object for a digest URI (KeyError for an unknown one)."""
    return hashlib.new(DIGESTS[uri][0])
