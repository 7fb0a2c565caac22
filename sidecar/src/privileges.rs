//! The relay's capabilities (capget/capset through rustix): which of `CAP_NET_BIND_SERVICE` and `CAP_NET_ADMIN` it
//! keeps, decided once before the runtime starts its threads.
//!
//! The image gives `iotrelay-sidecar` the file capabilities `cap_net_bind_service,cap_net_admin=+p`: permitted,
//! without the effective bit. A non-root process started from it (uid 65532 in the relay pod) gets each of them in
//! its permitted set only if the container's bounding set holds it (the pod's `capabilities.add`), and under
//! no_new_privs (`allowPrivilegeEscalation: false`) only if the container's permitted set holds it too; none is
//! effective until the relay raises it here. Without the effective bit the kernel also does not refuse the `exec`
//! when the bounding set lacks one of them (it does for a file capability with the effective bit), so the one
//! binary serves relay pods with and without `NET_ADMIN`.
//!
//! [`adopt`] raises `CAP_NET_BIND_SERVICE` (UDP 500, forward ports below 1024) when permitted, raises
//! `CAP_NET_ADMIN` only in gateway mode (the TUN device, its routes and MTU) and otherwise removes it from every
//! set, so a relay without gateway mode never holds it, even when started as root. Capabilities belong to
//! threads and new threads copy their creator's, so this runs while the process has one thread: every runtime
//! thread (the netlink task, the owner loop, the socket readers) then holds the same sets.

use rustix::thread::{CapabilitySet, CapabilitySets, capabilities, set_capabilities};

/// What [`adopt`] left the process with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    /// The effective set afterwards.
    pub effective: CapabilitySet,
    /// The permitted set afterwards.
    pub permitted: CapabilitySet,
}

/// The sets to install, from the current ones: pure, so the rule is testable without privileges.
/// `Err` names what gateway mode lacks.
pub fn plan(current: CapabilitySets, gateway: bool) -> Result<CapabilitySets, String> {
    let wanted =
        CapabilitySet::NET_BIND_SERVICE | if gateway { CapabilitySet::NET_ADMIN } else { CapabilitySet::empty() };
    let strip = if gateway { CapabilitySet::empty() } else { CapabilitySet::NET_ADMIN };
    let permitted = current.permitted - strip;
    let next = CapabilitySets {
        effective: (current.effective | (permitted & wanted)) - strip,
        permitted,
        inheritable: current.inheritable - strip,
    };
    if gateway && !next.effective.contains(CapabilitySet::NET_ADMIN) {
        return Err("gateway mode (spec.gateway) needs CAP_NET_ADMIN, and this process may not raise it. On \
                    Kubernetes the operator adds NET_ADMIN to the relay pod in gateway mode and the image's \
                    iotrelay-sidecar carries the file capability cap_net_admin+p (a copy of the binary without it, \
                    or an image builder that drops the security.capability attribute, loses it); standalone, run \
                    as root or give the unit AmbientCapabilities=CAP_NET_ADMIN"
            .into());
    }
    Ok(next)
}

/// Applies [`plan`] to the calling thread. Call it before any other thread exists (before the tokio runtime).
pub fn adopt(gateway: bool) -> anyhow::Result<Adopted> {
    let current = capabilities(None).map_err(|e| anyhow::anyhow!("reading the process's capabilities: {e}"))?;
    let next = plan(current, gateway).map_err(anyhow::Error::msg)?;
    if next != current {
        set_capabilities(None, next).map_err(|e| anyhow::anyhow!("setting the process's capabilities: {e}"))?;
    }
    Ok(Adopted { effective: next.effective, permitted: next.permitted })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NBS: CapabilitySet = CapabilitySet::NET_BIND_SERVICE;
    const NA: CapabilitySet = CapabilitySet::NET_ADMIN;

    fn sets(effective: CapabilitySet, permitted: CapabilitySet) -> CapabilitySets {
        CapabilitySets { effective, permitted, inheritable: CapabilitySet::empty() }
    }

    /// The relay pod without gateway mode: the file capability gave NET_BIND_SERVICE permitted, not effective.
    #[test]
    fn forwards_only_raises_bind_service() {
        let got = plan(sets(CapabilitySet::empty(), NBS), false).unwrap();
        assert_eq!(got, sets(NBS, NBS));
    }

    /// The relay pod in gateway mode: both permitted by the file capability, both raised.
    #[test]
    fn gateway_raises_net_admin() {
        let got = plan(sets(CapabilitySet::empty(), NBS | NA), true).unwrap();
        assert_eq!(got, sets(NBS | NA, NBS | NA));
    }

    /// NET_ADMIN held without gateway mode (root, a privileged pod, an ambient capability) is given up in every set.
    #[test]
    fn net_admin_dropped_without_gateway() {
        let all = CapabilitySet::all();
        let cur = CapabilitySets { effective: all, permitted: all, inheritable: NA | NBS };
        let got = plan(cur, false).unwrap();
        assert!(!got.effective.contains(NA) && !got.permitted.contains(NA) && !got.inheritable.contains(NA));
        // Everything else root holds is left as it was.
        assert_eq!(got.effective, all - NA);
        assert_eq!(got.inheritable, NBS);
    }

    /// Gateway mode in a pod without NET_ADMIN (or from a binary without the file capability) is an error that
    /// says what is missing, not a TUN failure later.
    #[test]
    fn gateway_without_net_admin_is_an_error() {
        let err = plan(sets(CapabilitySet::empty(), NBS), true).unwrap_err();
        assert!(err.contains("CAP_NET_ADMIN") && err.contains("cap_net_admin+p"), "{err}");
    }

    /// No NET_BIND_SERVICE permitted (a binary without file capabilities, high test ports): nothing raised, no error.
    #[test]
    fn missing_bind_service_is_left_to_bind() {
        let got = plan(sets(CapabilitySet::empty(), CapabilitySet::empty()), false).unwrap();
        assert_eq!(got, sets(CapabilitySet::empty(), CapabilitySet::empty()));
    }
}
