"""Live settings: typed settings whose values may also live in etcd, applied at run time.

- :mod:`kit.liveconfig.schema`: which fields are live (:func:`live_field`), where they live
  (``/webook/config/<environment>/<service>/<field>``, JSON values), how remote values are
  validated (:func:`validate_changes`);
- :mod:`kit.liveconfig.store`: the operator's side (:class:`ConfigStore`): get, set,
  history, rollback, diff and copy, each change one etcd transaction with its record;
- :mod:`kit.liveconfig.live`: the process's side (:class:`LiveSettings`): list, validate,
  apply, watch, keep the last good values, copy them to disk.

See docs/configuration.md.
"""

from kit.liveconfig.live import (
    LiveSettings,
    apply_observability,
    live_settings_for,
)
from kit.liveconfig.schema import (
    DELETE,
    HISTORY_ROOT,
    KEY_ROOT,
    ConfigInvalid,
    live_field,
    live_fields,
    overlay,
    validate_changes,
)
from kit.liveconfig.store import (
    ChangeRecord,
    ConfigStore,
    ConfigStoreError,
    ConflictError,
    UnknownVersion,
)

__all__ = [
    "DELETE",
    "HISTORY_ROOT",
    "KEY_ROOT",
    "ChangeRecord",
    "ConfigInvalid",
    "ConfigStore",
    "ConfigStoreError",
    "ConflictError",
    "LiveSettings",
    "UnknownVersion",
    "apply_observability",
    "live_field",
    "live_fields",
    "live_settings_for",
    "overlay",
    "validate_changes",
]
