"""The HTTP gateway: one FastAPI app in front of the gRPC services.

It serves the HTTP contract of the original Go webook backend (docs/gateway.md):
validates requests at the edge, authenticates callers with short/long JWTs revocable in
Redis, calls the services through their generated gRPC stubs, and maps their errors to the
``{code, msg, data}`` envelope. :func:`gateway.app.create_app` is the composition root;
``python -m gateway`` runs it under uvicorn.
"""
