"""Attaches to a worker with grpcio, knowing the API only through reflection.

Opens `WorkerService.Attach` on WORKER, types INPUT into its terminal, half-closes
the request stream and reads every response frame until the stream ends. Prints
one JSON document: the output (decoded as Latin-1, so every byte is kept), whether
the offsets were contiguous, the frame kinds seen and the exit status, for the
Rust test to check.

Usage: attach_client.py HOST:PORT WORKER INPUT
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> int:
    address, worker, typed = sys.argv[1], sys.argv[2], sys.argv[3]
    channel = grpc.insecure_channel(address)
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    method = pool.FindServiceByName("corral.v1.WorkerService").methods_by_name["Attach"]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    attach = channel.stream_stream(
        "/corral.v1.WorkerService/Attach",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )

    def requests():
        yield request_class(open={"worker": worker})
        yield request_class(input=typed.encode())

    output = bytearray()
    kinds = []
    contiguous = True
    next_offset = None
    exit_code = None
    for response in attach(requests(), timeout=60):
        kind = response.WhichOneof("frame")
        if not kinds or kinds[-1] != kind:
            kinds.append(kind)
        if kind == "output":
            if next_offset is not None and response.output.offset != next_offset:
                contiguous = False
            next_offset = response.output.offset + len(response.output.data)
            output += response.output.data
        elif kind == "exit":
            exit_code = response.exit.code
    print(
        json.dumps(
            {
                "output": output.decode("latin-1"),
                "contiguous": contiguous,
                "kinds": kinds,
                "exit_code": exit_code,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
