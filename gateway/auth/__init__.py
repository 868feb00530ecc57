"""Authentication: JWT access/refresh tokens, session revocation, the authenticated caller."""
