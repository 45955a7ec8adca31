"""Errors an axis binding raises, and the mapping from the peers' own codes to them.

Two families matter to the engine: :class:`RetryableAxisError` (try again later: timeouts,
connection failures, 5xx, a busy peer, the hub's empty SOAP Body) and
:class:`PermanentAxisError` (retrying the same request cannot help: bad credentials, a
refused document, an unknown recipient, a duplicate, a missing document). ``code`` is always
the peer's own code (hub ``Report/ErrorList/Error/Code`` or VXP ``ErrorCode``) so an operator
can look it up; ``text`` is the peer's description or ours.
"""

from __future__ import annotations


class AxisError(Exception):
    """A call to the axis failed; ``code`` is the peer's code, ``operation`` the call."""

    def __init__(self, text: str, *, code: str | None = None, operation: str | None = None):
        self.text = text
        self.code = code
        self.operation = operation
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f"{self.operation}: " if self.operation else ""
        code = f" [{self.code}]" if self.code else ""
        return f"{where}{self.text}{code}"


class RetryableAxisError(AxisError):
    """A transient failure: the same request may succeed later."""


class PermanentAxisError(AxisError):
    """The peer refused the request; repeating it unchanged will fail again."""


class AuthenticationError(PermanentAxisError):
    """Credentials (OrganId/Token, systemid/signature) were refused."""


class ValidationError(PermanentAxisError):
    """The peer found the message malformed (a missing or wrong field)."""


class UnknownRecipientError(PermanentAxisError):
    """A recipient is missing, duplicated or not known to the axis."""


class NotFoundError(PermanentAxisError):
    """The document asked for does not exist, or was never addressed to us."""


class DuplicateError(PermanentAxisError):
    """The peer already holds this document or status."""


class TLSError(PermanentAxisError):
    """The TLS handshake failed: the peer's certificate is not trusted (wrong or missing CA
    bundle, wrong host name, expired), or the peer refused ours (mutual TLS without a client
    certificate, or one it does not trust). A configuration problem, so never retried."""


class ProtocolError(PermanentAxisError):
    """The peer's answer could not be understood (not the contract's shape)."""


_HUB_EXACT: dict[str, type[AxisError]] = {
    "CheckPermission": AuthenticationError,
    "CheckSignature": AuthenticationError,
    "Permission": AuthenticationError,
    "M.CheckPermission": AuthenticationError,
    "M.Exist": DuplicateError,
    "M.UpdateTraces": DuplicateError,
    "M.GetDocumentCheckAllow": NotFoundError,
    "M.UpdateStatusDoc": NotFoundError,
    "N.MessageHeader.To": UnknownRecipientError,
    "MessageHeader.To.OrganId": UnknownRecipientError,
    "M.UpdateTrace": RetryableAxisError,  # the hub could not forward to the national axis
    "M.SaveDocError": RetryableAxisError,  # the hub could not store: its side
}

_VXP_EXACT: dict[str, type[AxisError]] = {
    "AUTH": AuthenticationError,
    "SIGNATURE": AuthenticationError,
    "SKEW": AuthenticationError,
    "REPLAY": AuthenticationError,
    "NOT_FOUND": NotFoundError,
    "DUPLICATE": DuplicateError,
    "UNKNOWN_RECIPIENT": UnknownRecipientError,
    "INVALID": ValidationError,
    "TOO_LARGE": ValidationError,
    "BUSY": RetryableAxisError,
    "INTERNAL": RetryableAxisError,
}


def hub_error_class(code: str | None) -> type[AxisError]:
    """The class for a hub ``Error/Code`` (``None``/empty: the wrong OrganId/Token case).

    A failed Report with an EMPTY ErrorList is how the hub answers bad credentials, hence
    :class:`AuthenticationError` for ``None``. Field checks (``N.*``, ``R.*``, codes naming a
    MessageHeader/TraceHeader field) are :class:`ValidationError`; other ``M.*`` codes are
    permanent failures of that operation.
    """
    if not code:
        return AuthenticationError
    if code in _HUB_EXACT:
        return _HUB_EXACT[code]
    if code.startswith(("N.MessageHeader.To", "R.MessageHeader.To")):
        return UnknownRecipientError
    if code.startswith(("N.", "R.", "MessageHeader", "TraceHeader", "M.MessageHeader", "DocumentId")):
        return ValidationError
    if code in ("PromulgationDate", "R.AttachmentName", "CodeNumber", "CodeNotation"):
        return ValidationError
    return PermanentAxisError


def vxp_error_class(code: str | None) -> type[AxisError]:
    """The class for a VXP ``ErrorCode`` (see :mod:`connector.axis.vxp_wire` for the codes)."""
    if code and code in _VXP_EXACT:
        return _VXP_EXACT[code]
    return PermanentAxisError


def http_error_class(status: int) -> type[AxisError]:
    """The class for an HTTP status that carried no answer we could read."""
    if status in (401, 403):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status == 409:
        return DuplicateError
    if status in (408, 425, 429) or status >= 500:
        return RetryableAxisError
    return PermanentAxisError
