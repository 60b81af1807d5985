# patchd build, test and packaging. `make test` is what CI runs (.ci/run),
# on a clean clone; docs/testing.md says what each target needs.
SHELL       := /bin/bash
GO          ?= go
# git refuses a checkout owned by another user (a CI workspace) unless told
# it is safe; this checkout is the one being built.
GIT         := git -c safe.directory=$(CURDIR)
VERSION     ?= $(shell ($(GIT) describe --tags --always --dirty 2>/dev/null || echo 0.0.0) | sed 's/^v//')
REVISION    ?= $(shell $(GIT) rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILD       := build
PKGVER      ?= $(shell echo "$(VERSION)" | grep -Eq '^[0-9]' && echo "$(VERSION)" || echo "0.0.0~$(VERSION)")
LDFLAGS     := -s -w \
  -X github.com/prometheus/common/version.Version=$(VERSION) \
  -X github.com/prometheus/common/version.Revision=$(REVISION) \
  -X github.com/prometheus/common/version.Branch=main \
  -X github.com/prometheus/common/version.BuildUser=patchd \
  -X github.com/prometheus/common/version.BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)
GOTEST_FLAGS ?= -race -count=1 -timeout 20m
# Two binaries from cmd/patchd (docs/design.md, "Two binaries"): patchd, the
# CLI operators type, built with -tags patchd_cli so that it links none of
# the daemon's heavy packages and starts fast; and patchd-daemon, the full
# binary, which runs the daemon and the commands the CLI hands it. The
# packages install patchd-daemon at DAEMON_PATH, where the CLI looks for it
# when it is not beside the CLI (as it is in $(BUILD)).
DAEMON_PATH := /usr/libexec/patchd/patchd-daemon
CLI_FLAGS   := -tags patchd_cli -ldflags "$(LDFLAGS) -X main.daemonPath=$(DAEMON_PATH)"
DAEMON_FLAGS := -ldflags "$(LDFLAGS)"
ARCHES      := amd64 arm64

.PHONY: build deps test test-go test-package test-prometheus test-fleet test-e2e lint package demo bench bench-hooks bench-startup bench-cycle bench-agentlog bench-scrape bench-idle bench-watcher clean

build: $(BUILD)/patchd $(BUILD)/patchd-daemon

$(BUILD)/patchd: FORCE
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build -trimpath $(CLI_FLAGS) -o $@ ./cmd/patchd

$(BUILD)/patchd-daemon: FORCE
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build -trimpath $(DAEMON_FLAGS) -o $@ ./cmd/patchd

# The packages' binaries: patchd-ARCH (the CLI) and patchd-daemon-ARCH.
$(ARCHES:%=$(BUILD)/patchd-%): $(BUILD)/patchd-%: FORCE
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 GOOS=linux GOARCH=$* $(GO) build -trimpath $(CLI_FLAGS) -o $@ ./cmd/patchd

$(ARCHES:%=$(BUILD)/patchd-daemon-%): $(BUILD)/patchd-daemon-%: FORCE
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 GOOS=linux GOARCH=$* $(GO) build -trimpath $(DAEMON_FLAGS) -o $@ ./cmd/patchd

FORCE:

# Everything that exists runs here, in this order; the e2e system test needs
# root. deps installs the Debian packages the tests need (as root, once) or
# says which are missing.
test: deps lint test-go test-package test-prometheus test-fleet test-e2e

deps:
	@packaging/test-deps.sh

test-go:
	$(GO) test $(GOTEST_FLAGS) ./...

lint:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	@# The CLI build's own files (the tests assume the full build).
	$(GO) tool staticcheck -tags patchd_cli -tests=false ./cmd/patchd
	@test -z "$$(gofmt -l $$($(GIT) ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$($(GIT) ls-files '*.go'); exit 1; }

# Package contents, lintian, systemd-analyze; the parts that install into a
# throwaway root need root and say when they are skipped.
test-package: package
	packaging/test-packages.sh $(BUILD)

# promtool on /metrics and the alert rules, a real Prometheus scrape, the
# full 1000-cycle cardinality test. Fails when promtool or prometheus is
# missing (make deps installs the Debian prometheus package).
test-prometheus: build
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { echo "test-prometheus: promtool and prometheus are required (apt-get install prometheus)"; exit 1; }
	promtool check rules packaging/prometheus/patchd-alerts.yml
	cd packaging/prometheus && promtool test rules patchd-alerts.test.yml
	PATCHD_REQUIRE_PROMETHEUS=1 PATCHD_REQUIRE_PROMTOOL=1 PATCHD_CARDINALITY_CYCLES=1000 \
	  $(GO) test -count=1 -timeout 20m -v \
	  -run '^(TestMetricsEndToEnd|TestRealPrometheusScrapesACycle|TestPrometheusPackagingFiles|TestDashboardAndRulesUseCataloguedMetrics|TestCardinalityAfterManyCycles|TestWebConfigEnforcesTLSAndBasicAuth)$$' \
	  ./cmd/patchd

# 100 simulated hosts (the release daemon, 127.0.1.N) under one real
# Prometheus: a patch wave, the alerts, the fleet rules, every dashboard
# query, and the fleet's costs (docs/fleet-prometheus.md). One user runs
# 100 patchd here, so it needs more inotify instances than the default 128.
FLEET_INOTIFY := 1024
test-fleet: build
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { echo "test-fleet: promtool and prometheus are required (apt-get install prometheus)"; exit 1; }
	promtool check rules packaging/prometheus/patchd-alerts.yml packaging/prometheus/patchd-fleet-rules.yml
	cd packaging/prometheus && promtool test rules patchd-alerts.test.yml patchd-fleet-rules.test.yml
	promtool check config packaging/prometheus/prometheus-federation.example.yml
	sed 's#/etc/prometheus/patchd-#$(CURDIR)/packaging/prometheus/patchd-#' packaging/prometheus/prometheus-scrape.example.yml > $(BUILD)/prometheus-scrape.check.yml
	promtool check config $(BUILD)/prometheus-scrape.check.yml
	@if [ "$$(cat /proc/sys/fs/inotify/max_user_instances)" -lt $(FLEET_INOTIFY) ] && [ "$$(id -u)" = 0 ]; then \
	  echo "test-fleet: sysctl -w fs.inotify.max_user_instances=$(FLEET_INOTIFY)"; sysctl -qw fs.inotify.max_user_instances=$(FLEET_INOTIFY); fi
	PATCHD_FLEET=1 PATCHD_FLEET_BIN=$(abspath $(BUILD))/patchd-daemon PATCHD_FLEET_REPORT=$(abspath $(BUILD))/fleet-report.txt \
	  $(GO) test -count=1 -timeout 10m -v -run '^TestFleet$$' ./packaging/fleettest/

# debootstrap + systemd-nspawn system test, root only. PATCHD_E2E_RUN=Regexp
# picks scenarios; the bookworm root is cached in $(BUILD)/e2e, fetched from
# this host's apt sources (or PATCHD_E2E_MIRROR).
test-e2e: package
	@if [ "$$(id -u)" != 0 ]; then echo "test-e2e: skipped: the system test needs root (debootstrap, systemd-nspawn)"; \
	else PATCHD_E2E=1 PATCHD_BUILD=$(abspath $(BUILD)) $(GO) test -count=1 -timeout 15m -v \
	  -run '$(or $(PATCHD_E2E_RUN),.)' ./packaging/systemtest/; fi

package: $(ARCHES:%=$(BUILD)/patchd-%) $(ARCHES:%=$(BUILD)/patchd-daemon-%)
	packaging/build-packages.sh $(BUILD) '$(PKGVER)'

# A patch run on a simulated host in a temp dir, as any user (cmd/patchd-demo).
demo: build
	$(GO) run ./cmd/patchd-demo --patchd $(BUILD)/patchd

# Benchmarks: each target prints its figures, the baseline measured in the
# same run (interleaved), their ratio, and the load average; BENCHMARKS.md
# quotes them with the exact command. A figure taken at a 1-minute load
# above 1 is to be measured again on a quiet machine.
LOADAVG = @awk '{ printf "load average (1, 5, 15 min): %s %s %s%s\n", $$1, $$2, $$3, ($$1 > 1 ? " -- above 1: re-measure on a quiet machine" : "") }' /proc/loadavg

bench: bench-hooks bench-startup bench-cycle bench-agentlog bench-scrape bench-idle bench-watcher

# patchd hooks run (the CLI, build/patchd) vs run-parts on 20 trivial hooks:
# 30 interleaved pairs, wall and CPU; then the runner in process against
# run-parts.
bench-hooks: build
	$(GO) run ./hooks/internal/hookbench -patchd $(BUILD)/patchd -hooks 20 -runs 30
	$(GO) test -run '^$$' -bench 'RunPhase20|RunParts20' -benchtime 20x ./hooks
	$(LOADAVG)

# CLI start-up: patchd version vs a Go hello, patchd status and a gate round
# vs patchd version, against a running daemon (cmd/patchd/startuptest).
bench-startup:
	set -o pipefail; PATCHD_BENCH_STARTUP=1 $(GO) test -count=1 -v -run '^TestBenchStartup$$' ./cmd/patchd/startuptest | grep -v '^=== RUN'

bench-cycle:
	$(LOADAVG)
	set -o pipefail; PATCHD_BENCH_CYCLE=1 $(GO) test -count=1 -timeout 10m -run 'TestBenchCycleLatency$$' -v ./cmd/patchd | grep -E 'cycle latency|baseline|ratio|over the|^(ok|FAIL|---)'

# 1 GiB agent log through the tailer vs wc -l (ratio, peak RSS), the classifier
# alone, and the rotation torture test in its long form (1000 rotations).
bench-agentlog:
	@mkdir -p $(BUILD)
	$(LOADAVG)
	PATCHD_AGENTLOG_BENCH_MB=1024 PATCHD_AGENTLOG_BENCH_OUT=$(CURDIR)/$(BUILD)/bench-agentlog.txt \
	  $(GO) test -count=1 -timeout 20m -run '^TestIngestVsWc$$' -v ./agent/agentlog/
	$(GO) test -count=1 -run '^$$' -bench '^BenchmarkClassifier$$' -benchmem ./agent/agentlog/
	set -o pipefail; PATCHD_AGENTLOG_TORTURE=long $(GO) test -count=1 -timeout 30m -run '^TestRotationTorture$$' -v ./agent/agentlog/ \
	  | grep -E 'rotations|^(ok|FAIL|---)'
	$(LOADAVG)

# Scrape latency of a busy patchd (every collector, cycles run): p50/p99.
bench-scrape:
	$(LOADAVG)
	$(GO) test -run '^$$' -bench '^BenchmarkScrape$$' -benchtime 3000x -count 1 ./cmd/patchd
	$(LOADAVG)

# Idle RSS/CPU over BENCH_IDLE_SECONDS (default 10 min; 60 for a quick look).
BENCH_IDLE_SECONDS ?= 600
bench-idle: build
	$(LOADAVG)
	packaging/systemtest/bench-idle.sh $(BUILD)/patchd-daemon $(BENCH_IDLE_SECONDS)
	$(LOADAVG)

# CPU of 10,000 hooks created under the hooks watcher (issue #17: < 10 s).
bench-watcher:
	$(LOADAVG)
	$(GO) test -count=1 -run '^$$' -bench '^BenchmarkWatcherCreate10000$$' -benchtime 2x ./hooks
	$(LOADAVG)

clean:
	rm -rf $(BUILD)
