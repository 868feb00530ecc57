"""Search service: full-text search over published articles and users, kept in sync by events."""
