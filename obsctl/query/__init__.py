"""Queries run over a source: the parallel file scans and Loki, one entry point per answer."""
