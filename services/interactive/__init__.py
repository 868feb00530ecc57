"""The interactive service: read counts, likes and collections of any business object.

Run it with ``python -m services.interactive`` (see :mod:`services.interactive.__main__` and
``docs/interactive.md``).
"""
