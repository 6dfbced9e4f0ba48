"""One pane per module; each renders data handed to it, and fetches nothing itself."""
