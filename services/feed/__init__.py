"""Feed service: a reader's feed of what happened around them (``python -m services.feed``)."""
