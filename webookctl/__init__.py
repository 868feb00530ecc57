"""``webookctl``: the operator's command line (``webookctl --help``, ``python -m webookctl``).

One tool for what an operator does to a running installation, grouped in sub-commands that
later capabilities extend: ``config`` (the live settings in etcd: get, set, diff, history,
rollback, copy between environments), ``sms records`` (the SMS send records), ``sessions
revoke`` (log sessions out), ``search reindex`` (rebuild the search index), ``jobs`` (the
scheduler's jobs) and ``migrate`` (a live table migration: its mode and validations).

Like a service's composition root, :mod:`webookctl.__main__` reads the settings
(:class:`webookctl.settings.CtlSettings`: ``WEBOOKCTL_*`` variables and flags) and builds
every client inside the command that needs it; nothing is created at import time. Output is
for people by default and one JSON document with ``--json``; the exit status is 0 on
success, 1 when the operation failed (one line on stderr) and 2 for a usage error.
"""
