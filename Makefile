# Thin entry points over CMake presets. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
.DEFAULT_GOAL := all

DEBIAN_PACKAGES := build-essential cmake pkg-config git clang clang-format clang-tidy cppcheck \
	libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libyaml-dev libsqlite3-dev libpq-dev \
	libssl-dev libcjose-dev libcmocka-dev libclang-rt-14-dev python3 python3-pip valgrind wrk sqlite3 \
	openssh-server
PYTHON ?= python3
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps release debug run test test-slow unit integration check format format-check lint fuzz bench tools localk8s rke opa helm valgrind clean

all: release

# Installs the Debian packages and Python test requirements that are missing (nothing when all are there).
deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@# kubectl for local clusters: Debian's kubernetes-client conflicts with a kubectl installed otherwise.
	@command -v kubectl >/dev/null || { echo "installing Debian package: kubernetes-client (kubectl)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client; }
	@$(PYTHON) -c 'import pytest, requests, openapi_spec_validator' 2>/dev/null || \
		$(PYTHON) -m pip install -q -r tests/integration/requirements.txt

release: deps
	@[ -f build/release/CMakeCache.txt ] || cmake --preset release >/dev/null
	cmake --build build/release -j$(JOBS)
	@mkdir -p bin && ln -sf ../build/release/clustermgmt bin/clustermgmt
	@echo "built bin/clustermgmt"

debug: deps
	@[ -f build/debug/CMakeCache.txt ] || cmake --preset debug >/dev/null
	cmake --build build/debug -j$(JOBS)

# The service on its embedded default: SQLite and state under ./data, listening on 127.0.0.1:8080.
run: release localk8s
	./bin/clustermgmt serve

# The whole suite: a smoke run of the uninstrumented build under valgrind memcheck, then every test
# under AddressSanitizer and UndefinedBehaviorSanitizer (the local engine's tests need the helper, so
# it is built first).
test: debug localk8s rke opa helm valgrind
	ctest --test-dir build/debug --output-on-failure -j$(JOBS)

# The slow integration tests that `make test` leaves out (pytest marker `slow`): each takes ten minutes or
# more, such as a customer token expiring (kube-apiserver issues none shorter than ten minutes).
test-slow: debug localk8s
	cd tests/integration && $(PYTHON) -m pytest -q -p no:cacheprovider -m slow . \
		--binary $(CURDIR)/build/debug/tests/clustermgmt-testbin

unit: debug
	ctest --test-dir build/debug --output-on-failure -L unit -j$(JOBS)

integration: debug localk8s rke helm
	ctest --test-dir build/debug --output-on-failure -L integration

# Format check, static analysis, then the sanitizer test suite.
check: format-check lint test

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

lint: debug
	@# memleak: cppcheck does not follow cleanup attributes; leaks are caught at run time by LeakSanitizer.
	cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability \
		--suppress=missingIncludeSystem --suppress=memleak --inline-suppr -I src -I tests src tests/support
	clang-tidy -p build/debug --quiet --warnings-as-errors='*' $$(git ls-files 'src/*.c')

# Each libFuzzer target for FUZZ_SECONDS (seeds in fuzz/corpus/<target>; those with key material in
# tests/testdata: sshkeys for the SSH key parser, redact for the redaction step; crashes in
# build/fuzz/artifacts).
fuzz: deps
	@[ -f build/fuzz/CMakeCache.txt ] || cmake --preset fuzz >/dev/null
	cmake --build build/fuzz -j$(JOBS)
	@mkdir -p build/fuzz/artifacts
	@set -e; for t in build/fuzz/fuzz_*; do \
		name=$$(basename $$t); mkdir -p build/fuzz/corpus/$$name; \
		seeds=""; if [ -d fuzz/corpus/$$name ]; then seeds=fuzz/corpus/$$name; fi; \
		if [ $$name = fuzz_sshkey ]; then seeds="$$seeds tests/testdata/sshkeys"; fi; \
		if [ $$name = fuzz_redact ]; then seeds="$$seeds tests/testdata/redact"; fi; \
		echo "== $$name for $(FUZZ_SECONDS)s"; \
		$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/$$name- \
			build/fuzz/corpus/$$name $$seeds 2>&1 | tail -n 12; \
	done

# Benchmarks against a baseline measured in the same run (docs/benchmarks.md).
bench: release
	$(PYTHON) bench/run.py --binary build/release/clustermgmt --bare build/release/bench/bare-responder \
		--testbin build/release/tests/clustermgmt-testbin

# The Go helpers (rke, opa, helm, localk8s) built from the Go module proxy into ./bin.
tools: localk8s rke opa helm

# The local engine's helper alone (bin/clustermgmt-localk8s); seconds when it is up to date.
localk8s:
	./scripts/build-localk8s.sh

# The rke engine's pinned binary alone (bin/rke).
rke:
	./scripts/build-rke.sh

# The pinned Open Policy Agent alone (bin/opa), the policy service of the compliance tests.
opa:
	./scripts/build-opa.sh

# The pinned Helm CLI alone (bin/helm), which installs the charts of add-ons.
helm:
	./scripts/build-helm.sh

# An integration smoke run of an uninstrumented build under valgrind memcheck.
valgrind: release
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration/test_smoke.py \
		--binary build/release/tests/clustermgmt-testbin --valgrind

clean:
	rm -rf build bin
