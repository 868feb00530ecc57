"""HTTP routes, one module per area; they translate HTTP ↔ gRPC and nothing more."""
