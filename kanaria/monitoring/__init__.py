"""Kanaria's monitoring pack, generated from code so that it cannot drift.

One source produces the PodMonitors, the Prometheus alert rules and the Grafana
dashboard that ship both in ``manifests/monitoring/`` and in the Helm chart
(``helm/kanaria/files/``). ``python -m kanaria.monitoring`` rewrites those files;
``--check`` fails when a committed file differs from what the code generates.

The queries are written only against the names in :mod:`kanaria.metric_names`
(plus the few standard series listed in :data:`kanaria.monitoring.promql.STANDARD_METRICS`),
which is what keeps dashboards, alerts and exporters agreeing.
"""
