"""Runtimes: where the proxy and backends run (local processes or docker compose)."""
