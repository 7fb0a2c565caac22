# iotrelay: the two commands a user needs are `make demo` and `make test` (as root, on a fresh Debian 12 machine).
SHELL := /bin/bash
export CARGO_TERM_COLOR ?= never
# Build caches (Go toolchain outputs, built Kubernetes binaries) live outside the checkout.
export IOTRELAY_CACHE ?= /var/cache/iotrelay
# The fuzz build (about 4.5 min cold on 2 cores) is cached there too; the workspace build stays in ./target.
export FUZZ_TARGET_DIR ?= $(IOTRELAY_CACHE)/fuzz-target

.PHONY: demo test deps deps-demo lint unit fuzz chart interop datapath gateway bgp e2e build bench crds k8s-tools

demo: deps-demo           ## a local lab: AWS-like strongSwan peers, a relayed UDP admin packet, the status
	e2e/demo.sh       # builds only the relay (cargo build --release -p iotrelay-sidecar)

test:                     ## everything: lint, unit, fuzz, chart, interop, datapath, Kubernetes e2e
	scripts/test.sh

deps:                     ## install what the lab and every test need (idempotent)
	scripts/deps.sh all

deps-demo:                ## only what the demo needs: strongSwan and a few tools, no Kubernetes, no cargo-fuzz
	scripts/deps.sh demo

k8s-tools:                ## the Kubernetes control plane, kubectl and helm into $(IOTRELAY_CACHE)/bin (cached)
	e2e/tools/build.sh

build:
	cargo build --release --bin iotrelay-sidecar --bin iotrelay-operator --bin kubectl-iotrelay

lint:
	cargo fmt --all --check
	@if grep -qx 'name = "serde_yaml"' Cargo.lock; then echo 'lint: serde_yaml is archived and unmaintained; use serde-saphyr (Cargo.lock)'; exit 1; fi
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test --workspace

fuzz:
	scripts/fuzz-deps.sh
	scripts/fuzz.sh

chart:                    ## the Helm chart, and the examples that need helm or systemd-analyze
	e2e/tools/build.sh helm
	charts/test.sh
	examples/test.sh

interop: build
	e2e/interop/run.sh

datapath: build
	e2e/datapath/run.sh

gateway: build             ## gateway mode (TUN) against strongSwan: ping, TCP, MTU, teardown
	e2e/gateway/run.sh

bgp: build                 ## dynamic routing against strongSwan + bird2: sessions, prefixes, failover, failback, NOTIFICATION
	e2e/bgp/run.sh

e2e: build k8s-tools     ## Kubernetes e2e on a real node (node-deps: containerd, runc, CNI, kubelet, kube-proxy)
	scripts/node-deps.sh
	e2e/k8s/run.sh

crds:                     ## regenerate crds/ and charts/iotrelay/files/crds/ from the Rust types
	cargo run -q -p iotrelay-operator --bin crdgen -- --write

bench:                    ## the whole path against the ceiling and the original setup -> BENCHMARKS.md (root, netns lab, ~15 min;
                          ## BENCH_QUICK=1 ~3 min); then crypto suites, batched vs one-by-one sends through the relay, and
                          ## IKE SAs per second of the responder; then the operator with 1000 IotRelays (~6 min)
	cargo build --release -p iotrelay-sidecar -p iotrelay-udpload -p iotrelay-ikeload
	flock /tmp/iotrelay-lab.lock bench/run.sh
	scripts/bench.sh
	bench/sidecar-send.sh
	cargo bench -q -p iotrelay-sidecar --bench ike_responder
	$(MAKE) --no-print-directory k8s-tools
	cargo build --release -p iotrelay-operator
	flock /tmp/iotrelay-lab.lock bench/k8s-scale.sh 1000   # the operator with 1000 IotRelays (docs/kubernetes.md)
