"""Simulated traffic with incidents (`expmon simulate`) and its exact ground truth."""
