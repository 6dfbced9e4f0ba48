"""The gated gradual migration: plan, gates, persisted state, and the runner."""
