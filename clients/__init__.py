"""Typed clients of one service for the others: what a service's peers share.

A service never imports another (tests/test_architecture.py); when two services need the
same view of a third — the interactive and comment services both ask the article service
whether an article is published — that view lives here once, built on the generated stubs
and :class:`kit.grpcx.client.ServiceClients`, never on the owner's implementation.
"""
