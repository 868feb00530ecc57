"""Tests of the article service: unit, integration (SQLite, MariaDB, Redis), gRPC, events."""
