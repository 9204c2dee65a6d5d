"""Frames between the worker processes and the writer process of one server.

A frame is a 4-byte big-endian length, then a pickle of a tuple. Pickle is safe here: both ends
are processes of the same server, and the socket lives in a directory only its user can open
(engine/supervisor.py). Domain errors travel as (class name, args, attributes), because their
constructors do not take what `Exception.args` holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import io
import pickle
import struct
from collections.abc import Callable
from typing import Any

from errorreplay_server.domain import errors as domain_errors
from errorreplay_server.domain import model

HEADER = struct.Struct(">I")

# worker -> writer: (CALL, call id, method, args)
CALL = 0
# writer -> worker: (REPLY, call id, ok, value or packed error)
REPLY = 1
# writer -> every worker: (COMMITTED, [snapshots]) in commit order, after COMMIT
COMMITTED = 2
# writer -> every worker: (TOPOLOGY,) after DEPENDS_ON edges were written
TOPOLOGY = 3
# worker -> writer, first on every connection: (HELLO, worker index)
HELLO = 4
# writer -> worker: (METRICS, request id); worker -> writer: (METRICS, request id, metric families)
METRICS = 5


def _dataclass_reducer(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    names = tuple(f.name for f in dataclasses.fields(cls))
    return lambda obj: (cls, tuple(getattr(obj, name) for name in names))


def _enum_reducer(member: enum.Enum) -> tuple[Any, ...]:
    return getattr, (type(member), member.name)


def _wire_table() -> dict[type, Callable[[Any], tuple[Any, ...]]]:
    """How the domain's types travel: a dataclass as its constructor's arguments, an enum as
    its name. Pickle's defaults for slotted dataclasses and enums (a Python __setstate__ per
    object, an EnumMeta call per member) made decoding a capture 4x slower (55 against 14 µs)."""
    table: dict[type, Callable[[Any], tuple[Any, ...]]] = {}
    for value in vars(model).values():
        if isinstance(value, type) and value.__module__ == model.__name__:
            if dataclasses.is_dataclass(value):
                table[value] = _dataclass_reducer(value)
            elif issubclass(value, enum.Enum):
                table[value] = _enum_reducer
    return table


_WIRE_TABLE = _wire_table()


def encode(frame: tuple[Any, ...]) -> bytes:
    buffer = io.BytesIO()
    buffer.write(b"\0" * HEADER.size)
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _WIRE_TABLE
    pickler.dump(frame)
    data = buffer.getbuffer()
    HEADER.pack_into(data, 0, len(data) - HEADER.size)
    return bytes(data)


async def read(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    """The next frame; asyncio.IncompleteReadError when the other end has gone."""
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    frame: tuple[Any, ...] = pickle.loads(await reader.readexactly(size))
    return frame


PackedError = tuple[str, tuple[Any, ...], dict[str, Any]]


def pack_error(exc: BaseException) -> PackedError:
    """A domain error as its class name and state; anything else as a RuntimeError naming it
    (an INTERNAL status on the worker, like any unexpected error)."""
    if isinstance(exc, domain_errors.DomainError) and getattr(domain_errors, type(exc).__name__, None) is type(exc):
        return type(exc).__name__, exc.args, dict(vars(exc))
    return "RuntimeError", (f"writer process: {type(exc).__name__}: {exc}",), {}


def unpack_error(packed: PackedError) -> Exception:
    name, args, state = packed
    cls = getattr(domain_errors, name, None) if name != "RuntimeError" else RuntimeError
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return RuntimeError(f"writer process: {name}: {args}")
    exc = cls.__new__(cls)
    exc.args = args
    vars(exc).update(state)
    return exc
