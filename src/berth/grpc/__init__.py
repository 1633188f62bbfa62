"""The gRPC front end: the KServe/Triton V2 service, berth.v1 and grpc.health.v1.

Like ``berth.http`` it only translates between the wire and the Engine. Nothing is
imported here: ``berth.grpc.generated`` (the protoc output) must be importable on its
own, by clients and tests, without pulling in the servicers. The server side starts
with :func:`berth.grpc.server.start_grpc`.
"""
