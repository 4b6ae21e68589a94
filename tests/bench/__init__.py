"""Benchmarks (``make bench``): each ``bench_*.py`` module has a ``main()`` that prints ratios
against peers measured in the same run. They are never part of ``make test``."""
