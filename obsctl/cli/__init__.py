"""Command-line shell: the fast lane (``entry``), the typer app and the command bodies.

Import-light on purpose: ``obsctl.cli.entry`` is imported on every start.
"""
