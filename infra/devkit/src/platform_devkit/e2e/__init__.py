"""End-to-end deployments (processes, containers, kind) and a Dagster GraphQL client, shared by
the e2e test body so every driver is exercised by the same assertions."""
