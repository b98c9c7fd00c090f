"""A corral.v1 client in Python that knows nothing of the .proto files.

It discovers the API through the server's gRPC reflection (grpc.reflection.v1alpha),
builds message classes from the descriptors it receives, then lists sessions and
reads one. Prints one JSON document with what it saw, for the Rust test to check.

Usage: reflection_client.py HOST:PORT
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> int:
    address = sys.argv[1]
    channel = grpc.insecure_channel(address)
    database = ProtoReflectionDescriptorDatabase(channel)
    services = database.get_services()
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName("corral.v1.SessionService")

    def call(method_name, request_fields):
        method = service.methods_by_name[method_name]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        stub = channel.unary_unary(
            f"/{service.full_name}/{method.name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return stub(request_class(**request_fields), timeout=10)

    listed = call("ListSessions", {"page_size": 10})
    sessions = [json_format.MessageToDict(s, preserving_proto_field_name=True) for s in listed.sessions]
    first = call("GetSession", {"name": listed.sessions[0].name}) if listed.sessions else None
    try:
        call("GetSession", {"name": "sessions/does-not-exist"})
        missing = "OK"
    except grpc.RpcError as error:
        missing = error.code().name
    print(
        json.dumps(
            {
                "services": sorted(services),
                "sessions": sessions,
                "got": json_format.MessageToDict(first, preserving_proto_field_name=True) if first else None,
                "missing": missing,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
