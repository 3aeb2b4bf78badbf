"""The platform's operations library: what every code location does alike.

- `platform_ops.alerts`: a run-failure sensor that posts to ALERT_WEBHOOK_URL when it is set;
- `platform_ops.recovery`: step retries for transient failures only, run-retry tags for the
  runs automation and schedules launch, and automation that requests a failed asset again.

Locations depend on it (a uv workspace member); it never imports a location. The rules are
in docs/operations.md.
"""
