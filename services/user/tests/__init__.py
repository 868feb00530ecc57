"""Tests of the user service: unit (fakes), integration (SQLite, MariaDB, Redis) and gRPC."""
