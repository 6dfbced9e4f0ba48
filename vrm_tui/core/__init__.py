"""The bottom layer: value types and one function per meaning. Imports nothing of vrm."""
