"""Would our own verifier accept a signature by this certificate? Asked before signing.

Why: :func:`connector.signing.sign.sign` signs with whatever key it is given (tests sign
with odd certificates on purpose, and the verifier is where trust is decided). A person
running ``cli.py sign`` with an expired certificate, another agency's, a CA's or a TLS
server's gets a document every receiver refuses; saying so before signing costs nothing.
These are the verifier's own rules for the signer certificate (validity; keyUsage,
basicConstraints and extendedKeyUsage through :func:`.trust.leaf_extension_problems`; the
agency code of :mod:`.identity`), not chain building: whether the chain reaches a trust
anchor is the receiver's question.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from .identity import agency_code_of
from .trust import leaf_extension_problems


def signing_certificate_problems(
    certificate: x509.Certificate, *, sender: str | None, at: dt.datetime | None = None
) -> list[str]:
    """Why a document from agency ``sender`` (its From/OrganId) signed now (or at ``at``)
    with ``certificate`` would be refused by the verifier; an empty list when it would not.

    Each problem is one sentence about the certificate, for a person to act on.
    """
    at = at or dt.datetime.now(dt.UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    problems: list[str] = []
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if at > not_after:
        problems.append(f"the certificate expired on {_day(not_after)}")
    elif at < not_before:
        problems.append(f"the certificate is not valid before {_day(not_before)}")
    try:
        problems += leaf_extension_problems(certificate)
    except ValueError:  # malformed extensions: the verifier cannot read them either
        problems.append("the certificate's extensions cannot be read")
    code = agency_code_of(certificate)
    if code is not None and sender and code != sender:
        problems.append(
            f"the certificate belongs to agency {code}, but the document comes from {sender} (From/OrganId)"
        )
    return problems


def _day(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


__all__ = ["signing_certificate_problems"]
