# Benchmarks (docs/benchmarks.md): code-location start, ingestion against the COPY limit and
# pandas, incremental cost, dbt, images. Not part of `make test` or CI: they take half an hour
# and their figures only mean something on a quiet machine. Code in infra/bench.
#
# The benchmarks run on their own embedded PostgreSQL in .local/bench (kept between runs: the
# seeded 1M-order shop takes minutes to generate; `rm -rf .local/bench` to start over).

BENCH := PYTHONPATH=infra/bench UV=$(UV) $(UV) run --frozen python -m platform_bench

.PHONY: bench
bench: setup ## Every benchmark (with images when Docker is up); writes docs/benchmarks.md and .json
	@echo "==> benchmarks: full profile (about 30-45 min; progress below)"
	@$(BENCH) --profile full

.PHONY: bench-quick
bench-quick: setup ## Smoke run of the benchmarks: small sizes, 2 runs, no images; writes .local/bench/quick/
	@echo "==> benchmarks: quick profile (figures not of record)"
	@$(BENCH) --profile quick --out .local/bench/quick
