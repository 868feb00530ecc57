"""The webook services: one package per gRPC service (``python -m services.<name>``).

Each holds its domain, service layer, repository, gRPC API, migrations and tests, and
talks to the others only through their generated stubs or through events — never by
importing them (``tests/test_architecture.py``). The local stack runs the services listed
in ``devstack/catalog.py``.
"""
