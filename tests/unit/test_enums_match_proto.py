"""Every domain enum equals its proto enum, value by value and name by name.

The api layer converts between them by number (api/convert.py), so a value added to one side only
would silently become UNSPECIFIED or another meaning on the way through.
"""

from __future__ import annotations

from enum import IntEnum

import pytest
from google.protobuf.descriptor import EnumDescriptor

from errorreplay.v1 import message_pb2, request_response_pb2
from errorreplay_server.analysis import model as analysis_model
from errorreplay_server.domain import model as domain_model

PAIRS: list[tuple[type[IntEnum], EnumDescriptor, str]] = [
    (domain_model.Severity, message_pb2.Severity.DESCRIPTOR, "SEVERITY_"),
    (domain_model.Source, message_pb2.Source.DESCRIPTOR, "SOURCE_"),
    (domain_model.CollectionState, message_pb2.CollectionState.DESCRIPTOR, "COLLECTION_STATE_"),
    (domain_model.SpanStatus, message_pb2.SpanStatus.DESCRIPTOR, "SPAN_STATUS_"),
    (domain_model.ChangeKind, message_pb2.ChangeKind.DESCRIPTOR, "CHANGE_KIND_"),
    (domain_model.GroupStatus, message_pb2.ErrorGroupStatus.DESCRIPTOR, "ERROR_GROUP_STATUS_"),
    (domain_model.GroupOrder, request_response_pb2.ErrorGroupOrder.DESCRIPTOR, "ERROR_GROUP_ORDER_"),
    (analysis_model.TimelineEventKind, message_pb2.TimelineEventKind.DESCRIPTOR, "TIMELINE_EVENT_KIND_"),
    (analysis_model.RootCauseCategory, message_pb2.RootCauseCategory.DESCRIPTOR, "ROOT_CAUSE_CATEGORY_"),
    (analysis_model.RecommendationKind, message_pb2.RecommendationKind.DESCRIPTOR, "RECOMMENDATION_KIND_"),
    (analysis_model.CorrelationReason, message_pb2.CorrelationReason.DESCRIPTOR, "CORRELATION_REASON_"),
]


@pytest.mark.parametrize(("domain", "proto", "prefix"), PAIRS, ids=[p[1].name for p in PAIRS])
def test_domain_enum_equals_proto_enum(domain: type[IntEnum], proto: EnumDescriptor, prefix: str) -> None:
    proto_values = {v.name.removeprefix(prefix): v.number for v in proto.values}
    domain_values = {member.name: int(member) for member in domain}
    assert domain_values == proto_values


def test_every_proto_enum_has_a_domain_twin() -> None:
    """A new enum in the protos must be added to PAIRS (and to the domain) before it is used."""
    proto_enums = {
        e.full_name
        for module in (message_pb2, request_response_pb2)
        for e in module.DESCRIPTOR.enum_types_by_name.values()
    }
    assert proto_enums == {p[1].full_name for p in PAIRS}
