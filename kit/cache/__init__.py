"""Caching helpers shared by services (metrics today; loaders as caches multiply)."""
