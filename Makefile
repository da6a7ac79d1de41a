# native async for Ansible: build, demo, tests.
#   make         build the native modules, then run the demo playbook on localhost
#   make test    Rust tests; integration, interop, reliability, conformance, installed-mode,
#                job-management, SSH and become suites (the integration suite also over SSH)
#   make bench   side-by-side benchmark against ansible-core's builtin modules
#   make lint    cargo fmt --check and clippy; ruff (ruff.toml) over tests/, bench/ and the action plugin;
#                ansible-lint (production profile) over examples/ and the collection's playbooks
#   make sanity  ansible-test sanity on the collection tarball (ansible-core 2.19 and the newest)
#   make galaxy-import  Galaxy's import check (galaxy-importer) on the collection tarball

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ANSIBLE_CORE ?= ansible-core>=2.19,<2.20
TARGET := x86_64-unknown-linux-gnu
# glibc 2.17 is RHEL 7's: binaries linked against it start on every x86_64 Linux we support.
ZIG_TARGET := $(TARGET).2.17
MODULES := ansible_collection/plugins/modules
RELEASE_DIR := target/$(TARGET)/release
BINARY := $(RELEASE_DIR)/native_async
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all build venv demo test test-rust test-integration test-matrix lint collection clean bench soak
.PHONY: ansible-lint sanity sanity-ignores galaxy-import

all: build demo

$(VENV)/.ready: Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '$(ANSIBLE_CORE)' pytest cargo-zigbuild ziglang
	touch $@

venv: $(VENV)/.ready

# Portable binaries: cargo-zigbuild links against glibc 2.17 symbol versions.
$(BINARY): venv $(shell find crates -name '*.rs' -o -name Cargo.toml) Cargo.toml
	cargo zigbuild --release --locked --target $(ZIG_TARGET) -p native_async

LAUNCHER_PARTS := tools/mklauncher.py tools/launcher.sh.in tools/fallback.py
$(MODULES)/async_wrapper: $(BINARY) $(LAUNCHER_PARTS)
	$(PY) tools/mklauncher.py --role wrapper --out $@ x86_64=$(BINARY)

$(MODULES)/async_status: $(BINARY) $(LAUNCHER_PARTS)
	$(PY) tools/mklauncher.py --role status --out $@ x86_64=$(BINARY)

build: $(MODULES)/async_wrapper $(MODULES)/async_status

demo: build
	cd examples && ANSIBLE_CONFIG=ansible.cfg ../$(VENV)/bin/ansible-playbook demo.yml

test-rust:
	cargo test --workspace --locked

# tests/ssh and the SSH runs need sshd, sudo and acl: tools/test-deps.sh installs
# them with apt when missing (CI starts from a fresh image).
test-integration: build
	tools/test-deps.sh
	$(VENV)/bin/pytest -q tests
	NATIVE_ASYNC_CONNECTION=ssh NATIVE_ASYNC_PIPELINING=0 $(VENV)/bin/pytest -q tests/integration
	NATIVE_ASYNC_CONNECTION=ssh NATIVE_ASYNC_PIPELINING=1 $(VENV)/bin/pytest -q tests/integration

test: test-rust test-integration

# The integration and conformance suites on ansible-core 2.16, 2.17, 2.18, 2.19 and
# the newest release, each in its own venv under .cache/matrix (about 12 minutes).
test-matrix: build
	tools/test-matrix.sh

# ruff (ruff.toml) lints the Python: the test suites, the bench and the action plugin.
RUFF_VERSION := 0.17.6
$(VENV)/.ruff-$(RUFF_VERSION): $(VENV)/.ready
	$(PY) -m pip install --quiet 'ruff==$(RUFF_VERSION)'
	touch $@

lint: $(VENV)/.ruff-$(RUFF_VERSION) ansible-lint
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	$(VENV)/bin/ruff check tests bench ansible_collection/plugins/action/async_status.py

# The bench draws its chart with matplotlib, kept out of the test venv.
BENCH_VENV := bench/.venv
$(BENCH_VENV)/.ready:
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet matplotlib
	touch $@

bench: build $(BENCH_VENV)/.ready
	$(BENCH_VENV)/bin/python bench/bench.py

COLLECTION_VERSION = $(shell sed -n 's/^version: *//p' ansible_collection/galaxy.yml)
collection: build
	cd ansible_collection && ../$(VENV)/bin/ansible-galaxy collection build --force --output-path ../dist

# The Ansible ecosystem's own checks (docs/ecosystem.md). galaxy-importer, ansible-lint,
# ansible-builder and antsibull-changelog live in .cache/ecosystem/tools, pinned by
# tools/ecosystem-requirements.txt, apart from .venv.
ECO_VENV := .cache/ecosystem/tools
$(ECO_VENV)/.ready: tools/ecosystem-requirements.txt tools/ecosystem-venv.sh
	tools/ecosystem-venv.sh $(ECO_VENV) tools/ecosystem-requirements.txt

ansible-lint: $(ECO_VENV)/.ready
	PATH=$(abspath $(ECO_VENV))/bin:$$PATH ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/examples/collections \
	  ansible-lint --profile production --offline --nocolor examples ansible_collection/playbooks

# Every test ansible-test sanity runs for a collection, on the tarball, on ansible-core 2.19
# and the newest release (tools/sanity.sh: its own venvs, offline pip bootstrap).
# tests/sanity/ignore-<minor>.txt are written from the built modules by `make sanity-ignores`.
SANITY_VERSIONS ?= 2.19 newest
SANITY_MINORS := 2.19 2.20 2.21
sanity: collection
	python3 tools/sanity_ignores.py --check ansible_collection $(SANITY_MINORS)
	SANITY_TARBALL=$(CURDIR)/dist/native-async_jobs-$(COLLECTION_VERSION).tar.gz tools/sanity.sh $(SANITY_VERSIONS)

sanity-ignores: build
	python3 tools/sanity_ignores.py ansible_collection $(SANITY_MINORS)

galaxy-import: collection $(ECO_VENV)/.ready
	python3 tools/galaxy_import.py $(ECO_VENV) dist/native-async_jobs-$(COLLECTION_VERSION).tar.gz

clean:
	cargo clean
	rm -f $(MODULES)/async_wrapper $(MODULES)/async_status

# Load and soak (minutes, not part of `make test`): 1000 jobs at once with their
# memory, the builtin wrapper's for comparison, then 10,000 short jobs polled and
# cleaned up concurrently. Figures go to .cache/soak/last_run.json.
soak: build
	$(PY) tests/soak/soak.py
