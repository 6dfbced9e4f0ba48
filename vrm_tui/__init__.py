"""vrm: the Vision Resource Manager migration console."""

__version__ = "0.1.0"
