"""obsctl: the incident CLI for services that log with foundation.

Kept import-light on purpose: ``obsctl --help`` must start fast, so heavy modules are
imported inside the commands that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
