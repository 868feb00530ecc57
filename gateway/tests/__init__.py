"""Gateway tests: HTTP through ASGI against a real grpc.aio fake user service and Redis."""
