"""Comment service: tree-shaped comments on any business object (``python -m services.comment``)."""
