"""Request and response models of the HTTP API: validation happens here, at the edge."""
