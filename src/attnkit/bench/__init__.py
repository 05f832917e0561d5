"""Benchmarks: candidates measured side by side in one process (DESIGN.md section 5).

Nothing here is imported by the library itself; ``attnkit bench ...`` runs it.
"""
