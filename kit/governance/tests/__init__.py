"""Tests of kit.governance: unit tests and real grpc.aio servers on loopback."""
