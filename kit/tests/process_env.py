"""The environment of a service process a test starts with ``python -m services.<name>``.

The test's own ``WEBOOK_*`` variables are dropped (the child must not inherit another
process's configuration by accident), the child runs in ``test`` mode (every process
defaults to ``prod``), and ``settings`` are set under the service's prefix.
"""

from __future__ import annotations

import os


def process_env(prefix: str, **settings: str) -> dict[str, str]:
    """The environment: ``settings`` as ``<prefix><NAME>`` variables, in test mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBOOK_")}
    env[f"{prefix}MODE"] = "test"
    env.update({f"{prefix}{name.upper()}": value for name, value in settings.items()})
    return env
