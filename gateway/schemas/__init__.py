"""Request and response models of the HTTP API: validation happens here, at the edge.

Ids, cursors and counts travel to the services as protobuf ``int64``: every integer the
gateway accepts for one is bounded by :data:`INT64_MAX` (and below by its own rule), so a
larger number is refused as bad input (code 4) instead of failing to encode (HTTP 500).
"""

from typing import Final

INT64_MAX: Final = 2**63 - 1
INT64_MIN: Final = -(2**63)
