"""Modal screens: confirmation, exact weight, logs, help."""
