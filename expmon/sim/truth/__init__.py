"""Exact per-window ground truth per family, computed from the events themselves."""
