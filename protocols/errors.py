"""The error tree of the protocols package.

    ProtocolError
    ├── LocalProtocolError    we tried something the protocol forbids (a bug on our side)
    └── RemoteProtocolError   the peer sent bytes we cannot accept
          .code               the response code to answer with
          .fatal              True when the byte stream cannot be resynchronised and the
                              connection must be closed after the answer

Codecs raise only these; callers never see msgspec or struct errors.
"""

from __future__ import annotations

from protocols.codes import ResponseCode


class ProtocolError(Exception):
    pass


class LocalProtocolError(ProtocolError):
    pass


class RemoteProtocolError(ProtocolError):
    def __init__(self, message: str, *, code: ResponseCode, fatal: bool) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal
