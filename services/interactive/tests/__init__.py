"""Tests of the interactive service: unit, integration (SQLite, MariaDB, Redis), consumer, gRPC."""
