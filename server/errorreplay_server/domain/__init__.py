"""Plain domain objects: no protobuf, no transport."""
