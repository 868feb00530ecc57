"""Scheduler service: cron jobs in SQL run by any number of instances, one run at a time.

This increment holds the core (docs/scheduler.md): cron parsing (:mod:`.cron`), the jobs and
executions tables (:mod:`.repository`), the job admin use cases (:mod:`.service`), the
take/renew/release loop with fencing tokens (:mod:`.scheduler`) and in-process executors
(:mod:`.executors`). The gRPC admin API and the process entry point come next.
"""
