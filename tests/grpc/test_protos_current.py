"""The checked-in generated code matches the .proto files, and the V2 protos match
Triton's on the wire (checked against the stubs inside ``tritonclient``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from google.protobuf import descriptor as d
from tritonclient.grpc import model_config_pb2 as triton_config
from tritonclient.grpc import service_pb2 as triton_service

from berth.grpc import build_protos
from berth.grpc.generated import grpc_service_pb2, model_config_pb2


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_generated_code_is_current(tmp_path: Path) -> None:
    fresh = tmp_path / "generated"
    build_protos.generate(fresh)
    expected, checked_in = _files(fresh), _files(build_protos.DEFAULT_OUT)
    assert sorted(checked_in) == sorted(expected), "run `make protos` (python -m berth.grpc.build_protos)"
    stale = [name for name in expected if expected[name] != checked_in[name]]
    assert not stale, f"stale generated files {stale}: run `make protos` (python -m berth.grpc.build_protos)"


def _messages(descriptor: d.Descriptor) -> Iterator[d.Descriptor]:
    yield descriptor
    for nested in descriptor.nested_types:
        yield from _messages(nested)


def _field(field: d.FieldDescriptor) -> tuple[object, ...]:
    target = field.message_type or field.enum_type
    oneof = field.containing_oneof.name if field.containing_oneof else None
    return (field.name, field.number, field.type, field.is_repeated, target.full_name if target else None, oneof)


def _enum(enum: d.EnumDescriptor) -> dict[str, int]:
    return {value.name: value.number for value in enum.values}


def _check_file(ours: d.FileDescriptor, theirs: d.FileDescriptor, *, complete: bool) -> None:
    assert ours.package == theirs.package == "inference"
    their_messages = {m.full_name: m for top in theirs.message_types_by_name.values() for m in _messages(top)}
    for top in ours.message_types_by_name.values():
        for message in _messages(top):
            assert message.full_name in their_messages, f"{message.full_name} is not in Triton's {theirs.name}"
            their_fields = {f.number: f for f in their_messages[message.full_name].fields}
            for field in message.fields:
                assert field.number in their_fields, f"{message.full_name}.{field.name} = {field.number} is not Triton's"
                assert _field(field) == _field(their_fields[field.number]), f"{message.full_name}.{field.name}"
            if complete:
                assert {f.number for f in message.fields} == set(their_fields), message.full_name
            for enum in message.enum_types:
                their_enum = _enum(their_messages[message.full_name].enum_types_by_name[enum.name])
                assert _enum(enum).items() <= their_enum.items(), enum.full_name
    if complete:
        ours_all = {m.full_name for top in ours.message_types_by_name.values() for m in _messages(top)}
        assert ours_all == set(their_messages)
    for name, enum in ours.enum_types_by_name.items():
        assert _enum(enum).items() <= _enum(theirs.enum_types_by_name[name]).items(), name


def test_v2_protos_match_triton_on_the_wire() -> None:
    _check_file(grpc_service_pb2.DESCRIPTOR, triton_service.DESCRIPTOR, complete=True)
    _check_file(model_config_pb2.DESCRIPTOR, triton_config.DESCRIPTOR, complete=False)
    ours = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton_service.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    shape = lambda m: (m.input_type.full_name, m.output_type.full_name, m.client_streaming, m.server_streaming)  # noqa: E731
    assert {m.name: shape(m) for m in ours.methods} == {m.name: shape(m) for m in theirs.methods}


def test_berth_and_triton_stubs_share_a_process() -> None:
    """berth registers its descriptors in its own pool, so both sets of stubs load."""
    request = grpc_service_pb2.ModelInferRequest(model_name="m", raw_input_contents=[b"\0" * 4])
    request.inputs.add(name="x", datatype="FP32", shape=[1])
    theirs = triton_service.ModelInferRequest.FromString(request.SerializeToString())
    assert theirs.inputs[0].name == "x" and theirs.raw_input_contents == [b"\0" * 4]
