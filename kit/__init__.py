"""Cross-cutting platform code shared by every webook service and the gateway.

Nothing in ``kit`` knows about any particular service; services depend on ``kit``, never the
other way round.
"""
