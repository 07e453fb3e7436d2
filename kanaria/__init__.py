"""Kanaria core: the ModelDeployment API, the rollout engine, metric gates and
the local runtime.

The core must stay importable without FastAPI, kopf or the Kubernetes client:
the operator, the local runtime and the CLI all drive the same pure engine, and
a laptop user should not need a cluster library to run ``kanaria up``.
"""

__version__ = "0.1.0"
