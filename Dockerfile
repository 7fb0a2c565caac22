# syntax=docker/dockerfile:1
# One small image with both binaries: iotrelay-operator (the chart's Deployment) and iotrelay-sidecar (the relay
# pods the operator creates run `iotrelay-sidecar kube`). Static musl binaries on distroless/static: no shell, no
# libc, no package manager.
#
#   docker build -t ghcr.io/iotrelay/iotrelay:0.1.0 .
#   helm install iotrelay charts/iotrelay --set image.repository=ghcr.io/iotrelay/iotrelay --set image.tag=0.1.0
#
# Not built in this project's CI: the build machines have no container engine (see docs/kubernetes.md). The e2e
# (e2e/k8s) runs the same binaries as processes through a fake kubelet instead.

ARG RUST_VERSION=1.89
FROM rust:${RUST_VERSION}-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl \
 && apt-get update && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl \
      --bin iotrelay-operator --bin iotrelay-sidecar \
 && mkdir /out \
 && cp target/x86_64-unknown-linux-musl/release/iotrelay-operator target/x86_64-unknown-linux-musl/release/iotrelay-sidecar /out/

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/iotrelay-operator /out/iotrelay-sidecar /usr/local/bin/
# The operator runs as nonroot (65532, set by the chart too). Relay pods run as uid 0 with only NET_ADMIN and
# NET_BIND_SERVICE (Kubernetes grants added capabilities only to root); the operator sets that per pod.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/iotrelay-operator"]
