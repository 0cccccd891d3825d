"""Benchmarks of gcnas: each module measures one claim side by side in one run and prints Markdown tables.

Run them from the repository root as modules, ``python -m benchmarks.<name>`` (``python -m benchmarks.blocks``);
``make bench`` runs the quick ones. They use gcnas's public API only (its statistics from :mod:`gcnas.stats`, a
trial's attributes through :mod:`gcnas.search.record`) and share :mod:`benchmarks.common`.
"""
