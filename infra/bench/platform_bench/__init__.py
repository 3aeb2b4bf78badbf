"""Benchmarks of the platform (`make bench`): code-location start, ingestion against the COPY
limit and a hand-written pandas load, incremental cost, dbt, images.

Every figure is the median of several runs with their min and max; every comparison is a ratio
of runs made in the same session, interleaved, on the same data and the same server
(docs/benchmarks.md explains the method and the results).
"""
