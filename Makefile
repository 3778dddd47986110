# Entry points. Every target that runs something bootstraps first (packages, OVS
# daemons, .venv), so each works on a fresh Debian 12 / Ubuntu 22.04+ machine.
# Run them as root.
VENV := .venv
PYTHON := $(VENV)/bin/python
SPEC ?= configs/quickstart.yaml
PYTEST_ARGS ?=
# vm-test's guest: a Debian suite (bookworm, trixie) and its tier (vm, or smoke only).
DISTRO ?= bookworm
TIER ?= vm

.PHONY: bootstrap run test unit smoke vm-test vm-tier cluster-test cluster-tier vm-clean lint docs docs/index.md clean-runs

bootstrap:
	@bash scripts/bootstrap.sh

run: bootstrap
	$(VENV)/bin/testbed run $(SPEC)

# Every tier on this machine.
test: bootstrap
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

unit: bootstrap
	$(PYTHON) -m pytest tests/unit $(PYTEST_ARGS)

# The fast tier a CI job runs: the quickstart, one loss probe, one teardown check.
smoke: bootstrap
	$(PYTHON) -m pytest tests -m smoke $(PYTEST_ARGS)

# Boots a Debian guest (DISTRO: bookworm = 12, the default; trixie = 13) with a stock
# kernel (netem, OVS kernel module) under QEMU and runs `vm-tier` there (TIER=smoke:
# `smoke` only). One image per release is built once and cached (see testbed/vm).
vm-test:
	@bash scripts/bootstrap.sh --vm
	$(PYTHON) -m testbed.vm test --distro $(DISTRO) --tier $(TIER) -- $(PYTEST_ARGS)

# What vm-test runs inside the guest: smoke plus the tests only a stock kernel can run.
vm-tier: bootstrap
	$(PYTHON) -m pytest tests -m "smoke or stock_kernel" $(PYTEST_ARGS)

# Boots two guests (the vm-test image) joined by one private segment that QEMU carries
# over the host's loopback, with ssh keys made for this run only, and runs
# `cluster-tier` on the first: Mininet Cluster Edition across two real servers.
# Slow under TCG; not part of `make test`.
cluster-test:
	@bash scripts/bootstrap.sh --vm
	$(PYTHON) -m testbed.vm cluster-test --distro $(DISTRO) -- $(PYTEST_ARGS)

# What cluster-test runs on its first guest (the second is mlnet-b).
cluster-tier: bootstrap
	MLNET_CLUSTER_PEER=mlnet-b $(PYTHON) -m pytest tests/cluster -m cluster $(PYTEST_ARGS)

# Removes the guest image cache (nothing else of vm-test stays on the host).
vm-clean:
	python3 -m testbed.vm clean

lint: bootstrap docs/index.md
	$(VENV)/bin/ruff check testbed controllers topologies tests benchmarks examples
	$(VENV)/bin/ruff format --check testbed controllers topologies tests benchmarks examples
	$(VENV)/bin/mkdocs build --strict --quiet

# The manual as a site, in site/ (docs/*.md; the home page is the README's text).
docs: bootstrap docs/index.md
	$(VENV)/bin/mkdocs build --strict --quiet

# Generated, not tracked: the README with its links made relative to docs/.
docs/index.md: README.md
	sed -e 's#](docs/#](#g' README.md > $@

# Remove leftovers of crashed runs of ours (bridges, interfaces, processes, nft tables).
clean-runs: bootstrap
	$(VENV)/bin/testbed clean
