"""The rehearsal backend: a stand-in Vision Resource Manager serving the real API and metrics."""
