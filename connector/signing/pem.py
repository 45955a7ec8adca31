"""Which certificate of a PEM bundle cannot be read, for error messages.

Why: cryptography reads a bundle all or nothing, and its error names neither the block nor
the file ("ParseError { kind: ShortData ... }"). When a bundle fails to load, this module
looks at it block by block, so the message can say "certificate 3 of 3 cannot be read".
It runs only after a load failed: the common path never pays for it.
"""

from __future__ import annotations

from cryptography import x509

BEGIN = b"-----BEGIN CERTIFICATE-----"
END = b"-----END CERTIFICATE-----"


def unreadable_certificates(data: bytes) -> tuple[int, list[int]]:
    """The number of ``CERTIFICATE`` blocks in PEM ``data``, and the 1-based positions of
    those that do not load (damaged, or cut before their END line)."""
    blocks = data.split(BEGIN)[1:]
    bad: list[int] = []
    for position, block in enumerate(blocks, start=1):
        end = block.find(END)
        if end < 0:
            bad.append(position)
            continue
        try:
            x509.load_pem_x509_certificate(BEGIN + block[: end + len(END)] + b"\n")
        except ValueError:
            bad.append(position)
    return len(blocks), bad


def describe_unreadable(data: bytes) -> str:
    """Why PEM ``data`` holds no readable certificate, in words (no library-internal text)."""
    if BEGIN not in data:
        return "not a PEM certificate (no -----BEGIN CERTIFICATE----- line)"
    total, bad = unreadable_certificates(data)
    if not bad:
        return "not a readable PEM certificate bundle"
    return f"{positions('certificate', bad, total)} cannot be read (damaged or truncated)"


def positions(noun: str, bad: list[int], total: int) -> str:
    """``certificate 3 of 3`` or ``certificates 1, 3 of 3``."""
    if len(bad) == 1:
        return f"{noun} {bad[0]} of {total}"
    return f"{noun}s {', '.join(map(str, bad))} of {total}"
