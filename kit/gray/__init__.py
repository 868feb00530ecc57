"""Gray release: send a share of the traffic to a new path, and change the share at run time.

- :mod:`kit.gray.rollout`: a :class:`Rollout` (``mode`` hash or random, ``percent`` 0..100 in
  basis points, ``allow`` ids always on) and the decision for one business id or draw;
- :mod:`kit.gray.decision`: :class:`Gray`, which reads the rollouts from the process's live
  settings (``gray_rollouts`` of :class:`kit.config.ClientSettings`) at every decision;
- :mod:`kit.gray.metrics`: decisions by rollout and side, the applied percent.

See docs/configuration.md, "Gray release", for the runbook.
"""

from kit.gray.decision import FixedSettings, Gray, HasRollouts, RolloutSource
from kit.gray.rollout import BUCKETS, OFF, BusinessId, Rollout, RolloutName, Side, bucket

__all__ = [
    "BUCKETS",
    "OFF",
    "BusinessId",
    "FixedSettings",
    "Gray",
    "HasRollouts",
    "Rollout",
    "RolloutName",
    "RolloutSource",
    "Side",
    "bucket",
]
