"""The article service: authors' drafts and versions, the published copies readers see.

Run it with ``python -m services.article`` (see :mod:`services.article.__main__` and
``docs/article.md``).
"""
