"""An ISO 8583 client built on pyiso8583 alone, as a merchant's vendor would build one:
pyiso8583's own 1987 spec, the 2-byte length header, HMAC-SHA256 over the message for the
MAC. It shares no code with the switch's codec, so the tests check the switch against an
independent implementation of docs/iso8583.md."""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any

import anyio.abc
import iso8583
from iso8583.specs import default as spec_1987

HEADER = struct.Struct(">H")
MAC_BYTES = 8
TRANSMISSION = "1130020000"  # DE7: 30 November, 02:00:00 UTC


def mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()[:MAC_BYTES]


def encode(fields: dict[str, str], key: bytes) -> bytes:
    document: dict[str, Any] = dict(fields)
    secondary = any(int(name) > 64 for name in document if name.isdigit())
    document["128" if secondary else "64"] = "00" * MAC_BYTES
    raw, _ = iso8583.encode(document, spec_1987)
    message = bytes(raw[:-MAC_BYTES]) + mac(key, bytes(raw[:-MAC_BYTES]))
    return HEADER.pack(len(message)) + message


def decode(message: bytes, key: bytes) -> tuple[dict[str, str], bool]:
    fields, _ = iso8583.decode(message, spec_1987)
    return fields, hmac.compare_digest(mac(key, message[:-MAC_BYTES]), message[-MAC_BYTES:])


class IsoClient:
    def __init__(self, stream: anyio.abc.ByteStream, terminal_id: str, key: bytes) -> None:
        self.stream = stream
        self.terminal_id = terminal_id
        self.key = key
        self.stan = 0
        self.buffer = b""
        self.mac_failures = 0

    def message(self, mti: str, **fields: str) -> dict[str, str]:
        """A request with DE7, the next DE11 and DE41 filled in (unless given)."""
        self.stan += 1
        out = {"t": mti, "7": TRANSMISSION, "11": f"{self.stan:06d}"}
        out["41"] = self.terminal_id.ljust(8)
        out.update({name.removeprefix("de"): value for name, value in fields.items()})
        return out

    def purchase(
        self, card: str, amount_fen: int, account: str = "00", **more: str
    ) -> dict[str, str]:
        return self.message(
            "0200", de2=card, de3=f"00{account}00", de4=f"{amount_fen:012d}", de49="156", **more
        )

    def preauth(self, card: str, amount_fen: int, account: str = "00") -> dict[str, str]:
        return self.message("0100", de2=card, de3=f"00{account}00", de4=f"{amount_fen:012d}")

    def balance(self, card: str, account: str = "00") -> dict[str, str]:
        return self.message("0100", de2=card, de3=f"31{account}00", de4="0" * 12)

    def bill(self, card: str, amount_fen: int, biller: str, reference: str) -> dict[str, str]:
        de48 = f"01{len(biller):03d}{biller}02{len(reference):03d}{reference}"
        return self.message("0200", de2=card, de3="500000", de4=f"{amount_fen:012d}", de48=de48)

    def medical(self, card: str, total_fen: int, pooled_fen: int) -> dict[str, str]:
        de54 = f"0090156C{pooled_fen:012d}"
        return self.message("0200", de2=card, de3="000000", de4=f"{total_fen:012d}", de54=de54)

    def original(self, request: dict[str, str]) -> str:
        return f"{request['t']}{request['11']}{request['7']}" + "0" * 22

    def reversal(self, request: dict[str, str], mti: str = "0400") -> dict[str, str]:
        return self.message(
            mti,
            de2=request.get("2", ""),
            de4=request.get("4", "0" * 12),
            de90=self.original(request),
        )

    def completion(self, preauth: dict[str, str], amount_fen: int) -> dict[str, str]:
        return self.message(
            "0220",
            de2=preauth["2"],
            de3=preauth["3"],
            de4=f"{amount_fen:012d}",
            de90=self.original(preauth),
        )

    async def send(self, *requests: dict[str, str]) -> None:
        await self.stream.send(b"".join(encode(r, self.key) for r in requests))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def receive(self) -> dict[str, str]:
        while True:
            if len(self.buffer) >= HEADER.size:
                (length,) = HEADER.unpack_from(self.buffer)
                if len(self.buffer) >= HEADER.size + length:
                    message = self.buffer[HEADER.size : HEADER.size + length]
                    self.buffer = self.buffer[HEADER.size + length :]
                    fields, ok = decode(message, self.key)
                    if not ok:
                        self.mac_failures += 1
                        fields["_mac"] = "bad"
                    return fields
            self.buffer += await self.stream.receive()

    async def request(self, request: dict[str, str]) -> dict[str, str]:
        await self.send(request)
        return await self.receive()

    async def aclose(self) -> None:
        await self.stream.aclose()
