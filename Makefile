# Entry points. Both targets bootstrap first (packages, OVS daemons, .venv), so
# each works on a fresh Debian 12 / Ubuntu 22.04+ machine. Run them as root.
VENV := .venv
SPEC ?= configs/quickstart.yaml
PYTEST_ARGS ?=

.PHONY: bootstrap run test unit lint clean-runs

bootstrap:
	@bash scripts/bootstrap.sh

run: bootstrap
	$(VENV)/bin/testbed run $(SPEC)

test: bootstrap
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

unit: bootstrap
	$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check testbed controllers topologies tests benchmarks
	$(VENV)/bin/ruff format --check testbed controllers topologies tests benchmarks

# Remove leftovers of crashed runs of ours (bridges, interfaces, processes, nft tables).
clean-runs: bootstrap
	$(VENV)/bin/testbed clean
