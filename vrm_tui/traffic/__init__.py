"""Traffic: the split value object, nginx rendering and apply protocol, the controller."""
