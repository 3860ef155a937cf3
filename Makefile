# clustermesh: run `make help` for the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
# Cached outside the work tree so that clean clones (CI) reuse them.
CACHE_DIR ?= $(HOME)/.cache/clustermesh
GOLANGCI_LINT_VERSION := $(shell awk '/golangci-lint\/v2 v/{print $$2}' tools/go.mod)
GOLANGCI_LINT := $(CACHE_DIR)/bin/golangci-lint-$(GOLANGCI_LINT_VERSION)
# Fuzz budget per target as a count of inputs (Nx), not a duration: with a
# duration, Go 1.26's fuzz coordinator can fail a target that found nothing
# with "context deadline exceeded" when its deadline races a busy worker
# (golang/go#75804, fixed only in Go 1.27). FUZZTIME=30s still works.
FUZZTIME  ?= 50000x
BENCHTIME ?= 1x
TEST_TIMEOUT ?= 20m
PKGS      ?= ./...
K8S_VERSION  ?= 1.37.1
ETCD_VERSION ?= 3.6.16
# What the binaries' --version says (internal/version): the VERSION file
# unless set, the commit, and the hash of the BPF objects they carry.
VERSION     ?= $(shell cat internal/version/VERSION)
COMMIT      := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
BPF_OBJECTS := sha256:$(shell cat bpf/tc_bpfel.o bpf/sock_bpfel.o | sha256sum | cut -d' ' -f1)
VERSION_PKG := github.com/clustermesh/clustermesh/internal/version
LDFLAGS     := -X $(VERSION_PKG).version=$(VERSION) -X $(VERSION_PKG).commit=$(COMMIT) -X $(VERSION_PKG).bpfObjects=$(BPF_OBJECTS)
BINARIES    := clustermesh clustermesh-apiserver clustermesh-agent clustermesh-cni
OUT_DIR     ?= _output
# The test bed's kube-apiserver and etcd, built from the Go module proxy.
export KUBEBUILDER_ASSETS ?= $(CACHE_DIR)/envtest/k8s-$(K8S_VERSION)-etcd-$(ETCD_VERSION)

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build every package and binary
	$(GO) build ./...

.PHONY: bin
bin: ## Build the binaries, with their version, into _output/bin
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(OUT_DIR)/bin/ $(addprefix ./cmd/,$(BINARIES))
	@for b in $(BINARIES); do $(OUT_DIR)/bin/$$b --version; done

# The container image (internal/image, hack/image): every binary for
# linux/amd64 and linux/arm64 in one OCI image index, written without a
# container runtime into $(IMAGE_DIR): oci/ (an OCI layout),
# clustermesh-linux-<arch>.tar (docker-loadable), digest. Timestamps are
# the commit's, so the same source gives the same digest.
IMAGE_REPOSITORY ?= ghcr.io/clustermesh/clustermesh
IMAGE_PLATFORMS  ?= linux/amd64,linux/arm64
IMAGE_DIR        ?= $(OUT_DIR)/image
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_FLAGS = --repository=$(IMAGE_REPOSITORY) --version=$(VERSION) --commit=$(COMMIT) \
	--ldflags="$(LDFLAGS)" --platforms=$(IMAGE_PLATFORMS) --epoch=$(SOURCE_DATE_EPOCH) \
	--binaries=$(subst $(space),$(comma),$(BINARIES))
comma := ,
space := $(empty) $(empty)

.PHONY: image
image: ## Build the container image (all binaries, amd64 and arm64) into _output/image, without Docker
	$(GO) run ./hack/image $(IMAGE_FLAGS) --out=$(IMAGE_DIR)

.PHONY: image-test
image-test: image runc ## Build the image twice (same digest) and run every binary of it under runc
	$(GO) run ./hack/image $(IMAGE_FLAGS) --out=$(IMAGE_DIR)-again
	@if ! cmp -s $(IMAGE_DIR)/digest $(IMAGE_DIR)-again/digest; then \
	  echo "image not reproducible: $$(cat $(IMAGE_DIR)/digest) then $$(cat $(IMAGE_DIR)-again/digest)"; exit 1; fi
	@echo "reproducible: $$(cat $(IMAGE_DIR)/digest)"
	rm -rf $(IMAGE_DIR)-again
	CLUSTERMESH_IMAGE_LAYOUT=$(abspath $(IMAGE_DIR))/oci $(GO) test -count=1 -run '^TestImage' ./internal/image

.PHONY: runc
runc: ## Install runc (Debian package) when missing
	@command -v runc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends runc; }

.PHONY: envtest-bins
envtest-bins: ## Build kube-apiserver, kube-controller-manager and etcd for the test bed (cached; minutes the first time)
	@K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) CACHE_DIR=$(CACHE_DIR) hack/kube-binaries.sh >/dev/null

.PHONY: demo
demo: envtest-bins bpf-deps ## Run the two-cluster demo on the bed with real traffic (root: namespaces, BPF, cgroups)
	$(GO) run ./cmd/clustermesh-demo

.PHONY: test
test: envtest-bins bpf-deps ## Run all tests (unit, real etcd, real kube-apiserver, real kernel, race detector)
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)
	cd interop && $(GO) vet ./... && $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

.PHONY: test-short
test-short: ## Run the fast tests only
	$(GO) test -short -count=1 $(PKGS)

.PHONY: bench
bench: envtest-bins ## Run the benchmarks, printing figures and ratios (BENCHTIME=1x)
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) -timeout 60m $(PKGS)

# The fault suites of issue 15 at full counts (make test runs short
# versions): R1, the peer's clustermesh-apiserver and etcd killed and
# restarted 100 times under churn; R2, a 60 s partition between agents and
# a peer under churn; the cache of remote state restarted under churn.
# Each prints its counts (entries lost, spurious deletes, times); without
# the race detector, so that the times mean something (make test runs the
# short versions with it).
SOAK_TESTS := ^(TestSoakPeerRestartsUnderChurn|TestSoakPartitionHeals|TestCacheRestartUnderChurnNoSpuriousDelete)$$
# R2 on the bed: a 60 s partition between two clusters' control planes
# (TestMesh's step; the bed's start is most of its 2-3 minutes).
SOAK_BED_TESTS := ^TestMesh$$/^PartitionHeals$$

.PHONY: soak
soak: envtest-bins bpf-deps ## Run the fault suites at full counts (100 peer restarts, a 60 s partition, the cache restarted), printing their counts
	CLUSTERMESH_SOAK=1 $(GO) test -count=1 -v -timeout 60m -run '$(SOAK_TESTS)' ./agent/remote ./clustermesh-apiserver/kvstoremesh 2>&1 \
	  | grep -v '^{"level"'
	CLUSTERMESH_SOAK=1 $(GO) test -count=1 -v -timeout 30m -run '$(SOAK_BED_TESTS)' ./e2e/scenarios 2>&1 \
	  | grep -E 'R2|partition|^(---|===|ok|FAIL|PASS)|_test.go'

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME inputs each (default 50000x)
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "==> fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

$(GOLANGCI_LINT): tools/go.mod tools/go.sum
	@mkdir -p $(dir $@)
	@echo "building golangci-lint $(GOLANGCI_LINT_VERSION) into $(CACHE_DIR)/bin"
	cd tools && $(GO) build -o $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint

.PHONY: tools
tools: $(GOLANGCI_LINT) ## Build the pinned tools (golangci-lint) into the cache

.PHONY: bpf-deps
bpf-deps: ## Install clang, llvm, libbpf headers, iptables (Debian packages, only what is missing)
	bash hack/bpf-deps.sh

.PHONY: bpf-generate
bpf-generate: bpf-deps ## Regenerate the BPF objects and their Go bindings (bpf2go)
	$(GO) generate ./bpf

.PHONY: lint
# gofmt checks every tracked Go file, interop/ included; golangci-lint runs on
# the root module only (interop/ and tools/ are modules of their own: interop
# holds tests against Cilium's packages, vetted by make test).
lint: $(GOLANGCI_LINT) bpf-deps ## Run gofmt, golangci-lint and the check that the committed BPF objects are fresh
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GOLANGCI_LINT) run ./...
	bpf/check-generated.sh

.PHONY: tidy
tidy: ## go mod tidy for the module, the tools module and the interop module
	$(GO) mod tidy
	cd tools && $(GO) mod tidy
	cd interop && $(GO) mod tidy
