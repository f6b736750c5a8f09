"""Alerting: rules over the cluster's metrics and error activity, evaluated once per interval
by one process of the cluster, notified by e-mail, Slack, PagerDuty and a signed webhook
through the job queue, with silences; and the same rules exported for Prometheus
(docs/alerts.md)."""
