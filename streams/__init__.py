"""faust stream processors: thin agents that call the plain logic in `expmon`."""
