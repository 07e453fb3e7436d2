"""The local runtime: ``kanaria up`` runs a ModelDeployment on one machine, no cluster.

It is the second actuator of :func:`kanaria.rollout.decide` (the operator is the
first): it starts one model-server process per live version, a router, and a
Prometheus (or the embedded metric source), and applies each Decision of the
engine. Everything it knows lives in a state directory, so the rollout survives
a restart of ``kanaria up``, and the CLI verbs (``status``, ``promote`` ...) only
read that directory or append to its command log.
"""
