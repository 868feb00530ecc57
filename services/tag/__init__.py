"""Tag service: users' own tags on the resources they own (``python -m services.tag``)."""
