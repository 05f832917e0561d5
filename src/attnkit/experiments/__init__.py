"""Reproducible experiments behind the ``attnkit`` commands, one package each.

Every experiment writes its results with :class:`attnkit.experiments.report.Report`
(metrics.json, README.md, PNG figures and a self-contained report.html) and has a
``--quick`` preset that its end-to-end test runs.
"""
