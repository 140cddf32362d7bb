"""Whole grids on Ray: every unfinished index of a sweep, each run exactly once.

``engine`` plans and drives the sweep (Ray, progress, retries); ``run_task`` is what a Ray worker
runs for one index (one ``frugal run`` process) and imports nothing heavy.
"""
