//! iotrelay-sidecar (work in progress).
