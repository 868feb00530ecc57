"""Pure ASGI middleware, one concern each; :mod:`gateway.app` composes them in order."""
