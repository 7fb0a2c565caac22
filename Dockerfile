# syntax=docker/dockerfile:1
# One small image with both binaries: iotrelay-operator (the chart's Deployment) and iotrelay-sidecar (the relay
# pods the operator creates run `iotrelay-sidecar kube`). glibc binaries on distroless/cc (glibc and libgcc, no
# shell, no package manager), for linux/amd64 and linux/arm64. The build stage runs on the builder's own
# platform and cross-compiles for the target one (no emulation):
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/iotrelay/iotrelay:0.1.0 --push .
#   helm install iotrelay charts/iotrelay --set image.repository=ghcr.io/iotrelay/iotrelay --set image.tag=0.1.0
#
# The Kubernetes e2e (e2e/k8s) runs this layout without a container engine: e2e/k8s/image.py reads this file's
# final stage (COPY, USER, ENTRYPOINT) and writes the same files, user and entrypoint from the release binaries
# into an OCI image that the test node's containerd imports. Keep the final stage to those instructions.

ARG RUST_VERSION=1.89
FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
# rust target, Debian cross-gcc package, its compiler; on an amd64 builder building amd64 that is the native gcc
# under another name.
RUN case "$TARGETARCH" in \
      amd64) echo "x86_64-unknown-linux-gnu gcc-x86-64-linux-gnu x86_64-linux-gnu-gcc" > /cross ;; \
      arm64) echo "aarch64-unknown-linux-gnu gcc-aarch64-linux-gnu aarch64-linux-gnu-gcc" > /cross ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac \
 && read -r target pkg _ < /cross \
 && rustup target add "$target" \
 && apt-get update && apt-get install -y --no-install-recommends "$pkg" "libc6-dev-$TARGETARCH-cross" libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The linker and the C parts (ring, AWS-LC) use the target's gcc.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=iotrelay-target-${TARGETARCH} \
    read -r target _ gcc < /cross \
 && export "CARGO_TARGET_$(echo "$target" | tr a-z- A-Z_)_LINKER=$gcc" "CC_$(echo "$target" | tr - _)=$gcc" \
 && cargo build --release --locked --target "$target" --bin iotrelay-operator --bin iotrelay-sidecar \
 && mkdir /out \
 && cp "target/$target/release/iotrelay-operator" "target/$target/release/iotrelay-sidecar" /out/ \
 && setcap cap_net_bind_service,cap_net_admin=+p /out/iotrelay-sidecar

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/iotrelay-operator /out/iotrelay-sidecar /usr/local/bin/
# Both run as nonroot (65532; the chart and the operator's relay pod spec set it too). The relay binds UDP 500 (and
# forward ports below 1024) and, in gateway mode only, creates a TUN device and routes: a non-root process keeps no
# capability across exec unless the binary carries it as a file capability, hence setcap in the build stage
# (COPY --from keeps the security.capability xattr with BuildKit; an image builder that drops xattrs gives relays
# that cannot bind UDP 500). The capabilities are permitted only, without the effective bit: the relay raises
# cap_net_bind_service itself, and cap_net_admin only in gateway mode, dropping it otherwise. (With the effective
# bit the kernel would refuse to exec the binary in every pod whose bounding set lacks one of them, i.e. every
# relay without gateway mode.) Under no_new_privs (allowPrivilegeEscalation: false) the kernel grants a file
# capability only when the container's capability sets hold it too: the relay pod adds NET_BIND_SERVICE, and
# NET_ADMIN only in gateway mode, and drops everything else (docs/kubernetes.md).
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/iotrelay-operator"]
