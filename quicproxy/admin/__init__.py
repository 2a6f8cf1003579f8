"""The admin listener: Prometheus metrics over all workers, a health probe, a status page, drain.

Where it runs: with ``[admin]`` configured, ``quicproxy.server.serve`` forks once more. The
first process (the one the operator started, systemd's main PID) runs only the admin listener;
its child runs the proxy exactly as without ``[admin]`` (one worker, or the supervisor and its
workers). Signals to the first process are forwarded to the child; from the first SIGTERM or
SIGINT ``/healthz`` answers 503 until the child has drained and exited. The admin listener so
keeps answering while workers die, restart and drain, and never runs on a proxy event loop.

How workers hear of it (one path whatever the worker count): a run directory, made in a temp
dir before the fork and removed at exit, holds prometheus-client's multiprocess files and
``drain.json``. ``POST /drain`` rewrites ``drain.json`` (atomically, with a new version); every
worker's agent reads it once a second, applies ``LoadBalancer.drain`` to its balancers and
reports the version it applied in a gauge; the POST answers once every live worker reports it
(within a few seconds). A worker that restarts applies the file at its first tick.
"""

from __future__ import annotations

from .plan import AdminPlan

__all__ = ["AdminPlan"]
