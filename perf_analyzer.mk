# Triton's perf_analyzer, for tests/http/test_perf_analyzer.py and bench/v2.py.
# Included from the Makefile. Installs into var/tools/perf_analyzer/ with pip download
# (nothing goes into the venv) and needs Debian's libb64-0d. Idempotent and quick when
# already installed, so it is safe as a prerequisite of `make test`.
.PHONY: perf-analyzer

perf-analyzer: install
	PIP=$(BIN)/pip bash tools/install_perf_analyzer.sh
