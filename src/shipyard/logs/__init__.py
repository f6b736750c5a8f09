"""Request and event logs: JSON lines on stdout, PocketBase's request log (`/api/logs`),
optional OpenTelemetry traces (docs/logs.md)."""
