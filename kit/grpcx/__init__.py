"""gRPC plumbing: server bootstrap, client factory and error translation."""
