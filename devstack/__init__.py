"""The local stack as its own tool: ``make run`` and the launchers tests and benchmarks share.

``catalog`` is the one list of services; ``infra`` starts etcd, the broker and Redis from
wheels and manages child processes; ``suite`` configures and starts the webook processes;
``__main__`` is ``make run``. Kept out of ``kit`` so that the platform code names no service.
"""
