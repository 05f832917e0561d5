"""Reproducible experiments behind the ``attnkit`` commands (reports: JSON, PNG, markdown)."""
