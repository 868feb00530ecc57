"""The user service: accounts, password login, profiles and find-or-create for SMS and WeChat.

Run it with ``python -m services.user`` (see :mod:`services.user.__main__` and
``docs/user-service.md``).
"""
