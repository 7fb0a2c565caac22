# iotrelay: the two commands a user needs are `make demo` and `make test` (as root, on a fresh Debian 12 machine).
SHELL := /bin/bash
export CARGO_TERM_COLOR ?= never
# Build caches (Go toolchain outputs, built Kubernetes binaries) live outside the checkout.
export IOTRELAY_CACHE ?= /var/cache/iotrelay
# The fuzz build (about 4.5 min cold on 2 cores) is cached there too; the workspace build stays in ./target.
export FUZZ_TARGET_DIR ?= $(IOTRELAY_CACHE)/fuzz-target

.PHONY: demo test deps lint unit fuzz chart interop datapath e2e build bench crds

demo: deps build          ## a local lab: AWS-like strongSwan peers, a relayed UDP admin packet, the status
	e2e/demo.sh

test:                     ## everything: lint, unit, fuzz, chart, interop, datapath, Kubernetes e2e
	scripts/test.sh

deps:                     ## install what the lab and tests need (idempotent)
	scripts/deps.sh

build:
	cargo build --release --bin iotrelay-sidecar --bin iotrelay-operator

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

unit:
	cargo test --workspace

fuzz:
	scripts/fuzz.sh

chart:
	charts/test.sh

interop: build
	e2e/interop/run.sh

datapath: build
	e2e/datapath/run.sh

e2e: build
	e2e/k8s/run.sh

crds:                     ## regenerate crds/ and charts/iotrelay/crds/ from the Rust types
	cargo run -q -p iotrelay-operator --bin crdgen -- --write

bench:                    ## crypto suites; plus batched vs one-by-one sends through the relay (root)
	scripts/bench.sh
	bench/sidecar-send.sh
