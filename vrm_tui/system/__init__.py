"""Operating-system helpers: /proc readers, process records, free ports, file tailing."""
