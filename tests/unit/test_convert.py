"""Protobuf <-> domain conversions that carry logic of their own."""

from __future__ import annotations

from google.protobuf import json_format, struct_pb2

from errorreplay_server.api.convert import struct_to_dict


def test_struct_to_dict_matches_json_format() -> None:
    s = struct_pb2.Struct()
    s.update(
        {
            "text": "ünï ✓",
            "number": 12.5,
            "integer": 3,
            "flag": False,
            "none": None,
            "nested": {"list": [1, "two", None, True, {"deep": []}], "empty": {}},
        }
    )
    assert struct_to_dict(s) == json_format.MessageToDict(s)
    assert struct_to_dict(struct_pb2.Struct()) == {}
