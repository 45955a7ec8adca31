"""Which agency a certificate speaks for.

The agency code (mã định danh) is carried in the subject's UID attribute, as the development
PKI issues it. Certificates from other CAs may carry none; then the signature authenticates a
person or organisation by name only, and the verdict says the sender is not bound.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

AGENCY_CODE_ATTRIBUTE = NameOID.USER_ID


def agency_code_of(cert: x509.Certificate) -> str | None:
    """The agency code carried in the subject's UID attribute, if any."""
    values = cert.subject.get_attributes_for_oid(AGENCY_CODE_ATTRIBUTE)
    return str(values[0].value) if values else None
