"""Tests of the showcase: the example services, ``make demo`` and the observability configs."""
