"""Failure-injection tests over the whole real stack (``make chaos``)."""
