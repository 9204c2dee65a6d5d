"""Request bodies read with limits: the size as sent, then the size once decompressed.

The compressed size is checked against Content-Length before anything is read and again while
streaming (a chunked body has no length). Decompression is incremental with an output cap, so a
compression bomb is refused after inflating at most the cap, never inflated whole."""

from __future__ import annotations

import zlib
from typing import Protocol

from aiohttp import web

from errorreplay_server.http.errors import HttpProblem

try:  # optional: `Content-Encoding: br` (the `brotli` extra)
    import brotli
except ImportError:  # pragma: no cover - depends on the installation
    brotli = None

SUPPORTED_ENCODINGS = ("identity", "gzip", "deflate", *(("br",) if brotli is not None else ()))


class TooLarge(Exception):
    pass


class Decoder(Protocol):
    def feed(self, data: bytes, room: int) -> bytes:
        """Decoded bytes of `data`; raises TooLarge when they would exceed `room`."""
        ...

    def finish(self) -> None:
        """Raises ValueError when the stream ended early."""
        ...


class _Identity:
    def feed(self, data: bytes, room: int) -> bytes:
        if len(data) > room:
            raise TooLarge
        return data

    def finish(self) -> None:
        return None


class _Zlib:
    def __init__(self, name: str) -> None:
        self._name = name
        self._d: zlib._Decompress | None = None

    def _start(self, first: bytes) -> zlib._Decompress:
        if self._name == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # HTTP "deflate" is zlib-wrapped (RFC 9110), but some clients send a raw deflate stream.
        zlib_header = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)

    def feed(self, data: bytes, room: int) -> bytes:
        if self._d is None:
            self._d = self._start(data)
        if self._d.eof:
            if data:
                raise ValueError("data after the end of the compressed stream")
            return b""
        # At most room + 1 bytes come out: one byte more than allowed is proof enough.
        out = self._d.decompress(data, room + 1)
        if len(out) > room:
            raise TooLarge
        if self._d.unused_data:
            raise ValueError("data after the end of the compressed stream")
        return out

    def finish(self) -> None:
        if self._d is None or not self._d.eof:
            raise ValueError("the compressed stream ends early")


class _Brotli:
    def __init__(self) -> None:
        assert brotli is not None
        self._d = brotli.Decompressor()

    def feed(self, data: bytes, room: int) -> bytes:
        out = bytearray(self._d.process(data, output_buffer_limit=room + 1))
        while len(out) <= room and not self._d.can_accept_more_data():
            out += self._d.process(b"", output_buffer_limit=room + 1 - len(out))
        if len(out) > room:
            raise TooLarge
        return bytes(out)

    def finish(self) -> None:
        if not self._d.is_finished():
            raise ValueError("the compressed stream ends early")


def decoder_for(content_encoding: str) -> Decoder:
    name = content_encoding.strip().lower() or "identity"
    if name == "identity":
        return _Identity()
    if name in ("gzip", "x-gzip"):
        return _Zlib("gzip")
    if name == "deflate":
        return _Zlib("deflate")
    if name == "br" and brotli is not None:
        return _Brotli()
    raise HttpProblem(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        f"Content-Encoding {content_encoding[:40]!r} is not supported; use one of {', '.join(SUPPORTED_ENCODINGS)}",
    )


def _too_large(what: str, limit: int) -> HttpProblem:
    return HttpProblem(413, "PAYLOAD_TOO_LARGE", f"the request body {what} is larger than {limit} bytes")


async def read_body(request: web.Request, max_body_bytes: int, max_decompressed_bytes: int) -> bytes:
    """The decoded body, or an HttpProblem (413 over a limit, 415 unknown encoding, 400 corrupt)."""
    if request.content_length is not None and request.content_length > max_body_bytes:
        raise _too_large("as sent", max_body_bytes)
    decoder = decoder_for(request.headers.get("Content-Encoding", ""))
    out = bytearray()
    received = 0
    encoding = request.headers.get("Content-Encoding", "identity")
    try:
        async for chunk in request.content.iter_any():
            received += len(chunk)
            if received > max_body_bytes:
                raise _too_large("as sent", max_body_bytes)
            out += decoder.feed(chunk, max_decompressed_bytes - len(out))
        if received:
            decoder.finish()
    except TooLarge:
        raise _too_large("once decompressed", max_decompressed_bytes) from None
    except (zlib.error, ValueError) as exc:
        raise HttpProblem(400, "INVALID_ARGUMENT", f"the body is not valid {encoding[:20]}: {exc}") from None
    except Exception as exc:
        if brotli is not None and isinstance(exc, brotli.error):
            raise HttpProblem(400, "INVALID_ARGUMENT", "the body is not valid br") from None
        raise
    if not out:
        raise HttpProblem(400, "INVALID_ARGUMENT", "the request body is empty")
    return bytes(out)
