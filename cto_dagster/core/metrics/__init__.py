"""Measuring runs: speedup against the plan, how far a run is, what its checks said."""
