"""The map-reduce engine: formula IR, reductions, targets and dispatch."""
