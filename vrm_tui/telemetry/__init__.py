"""Data sources and rolling statistics: plain Python, used by the CLI, the TUI and tests."""
