//! The reasons of the status conditions, as enums: writers build conditions from them and readers parse them back
//! (`str::parse`), so no reason is ever compared as a string. `as_str` is the wire string, the variant's name, the
//! same strings the conditions carried before these types existed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A condition reason that is not one of the enum's variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown condition reason")]
pub struct UnknownReason;

macro_rules! reasons {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &[$name] = &[$($name::$v,)*];

            /// The wire string: the variant's name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$v => stringify!($v),)*
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownReason;
            fn from_str(s: &str) -> Result<Self, UnknownReason> {
                Self::ALL.iter().copied().find(|r| r.as_str() == s).ok_or(UnknownReason)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(|_| serde::de::Error::custom(format!("unknown {} {s:?}", stringify!($name))))
            }
        }
    };
}

reasons! {
    /// Reasons of the relay's `TunnelsReady` condition (standalone: of its `Ready`): whether the relay carries
    /// traffic.
    TunnelsReadyReason {
        /// True: a tunnel is established (with `spec.bgp`: and its BGP session too) and every forward listens.
        TunnelEstablished,
        /// No tunnel has an established CHILD_SA (connecting, or down for a reason retrying may fix).
        NoTunnelEstablished,
        /// A tunnel is up but a forward's socket is not bound.
        ForwardNotListening,
        /// With `spec.bgp`: no established tunnel has an Established BGP session, so AWS routes nothing here.
        NoBgpSessionEstablished,
        /// The peer refused our authentication or we refused its (wrong pre-shared key): permanent.
        AuthenticationFailed,
        /// No proposal both sides accept (`spec.ike` / `spec.esp` against the VPN's settings): permanent.
        NoProposalChosen,
        /// The peer refused the traffic selectors: permanent.
        TsUnacceptable,
    }
}

impl TunnelsReadyReason {
    /// True when retrying cannot help without a configuration change (then the IotRelay is `Stalled`).
    pub const fn is_permanent(self) -> bool {
        matches!(self, Self::AuthenticationFailed | Self::NoProposalChosen | Self::TsUnacceptable)
    }
}

reasons! {
    /// Reasons of the relay's `Degraded` condition.
    DegradedReason {
        /// True: a configured tunnel is down while another carries traffic.
        TunnelDown,
        /// True (with `spec.bgp`): a tunnel is up but its BGP session is not Established.
        BgpSessionDown,
        /// False: nothing carries traffic, so nothing is degraded (see `TunnelsReady`).
        NoTunnelEstablished,
        /// False: every configured tunnel is established.
        AllTunnelsEstablished,
    }
}

reasons! {
    /// Reasons of the `Stalled` condition (the operator's in-cluster; standalone the relay's own for its
    /// permanent tunnel failures).
    StalledReason {
        /// The spec breaks a rule of the schema or the validator.
        InvalidSpec,
        /// The relay pod cannot be created (the Deployment's `ReplicaFailure`: Pod Security, a quota, a webhook).
        FailedCreate,
        /// A referenced Secret does not exist (looked for again every 30 s).
        SecretNotFound,
        /// A referenced Secret lacks the key (looked for again every 30 s).
        SecretKeyNotFound,
        /// `spec.image` is set but the chart does not allow image overrides.
        ImageOverrideNotAllowed,
        /// `spec.privileged` is true but the chart does not allow privileged relays.
        PrivilegedNotAllowed,
        /// A port of the spec is the relay metrics port the chart configured.
        PortConflict,
        /// The relay reports a wrong pre-shared key.
        AuthenticationFailed,
        /// The relay reports that no proposal was chosen.
        NoProposalChosen,
        /// The relay reports unacceptable traffic selectors.
        TsUnacceptable,
        /// False: nothing is stalled.
        NotStalled,
    }
}

impl StalledReason {
    /// The `Stalled` reason for a relay's permanent tunnel failure; `None` when `r` is not permanent.
    pub const fn from_tunnels(r: TunnelsReadyReason) -> Option<StalledReason> {
        match r {
            TunnelsReadyReason::AuthenticationFailed => Some(StalledReason::AuthenticationFailed),
            TunnelsReadyReason::NoProposalChosen => Some(StalledReason::NoProposalChosen),
            TunnelsReadyReason::TsUnacceptable => Some(StalledReason::TsUnacceptable),
            TunnelsReadyReason::TunnelEstablished
            | TunnelsReadyReason::NoTunnelEstablished
            | TunnelsReadyReason::ForwardNotListening
            | TunnelsReadyReason::NoBgpSessionEstablished => None,
        }
    }

    /// A missing Secret or key: Secrets are not watched, so the operator looks again periodically.
    pub const fn is_secret(self) -> bool {
        matches!(self, Self::SecretNotFound | Self::SecretKeyNotFound)
    }
}

reasons! {
    /// The reasons of `Reconciling`, and the operator's own reasons of `Ready=False` while the relay does not report
    /// (the relay pod's reasons, e.g. `Unschedulable` or `CrashLoopBackOff`, are passed on as Kubernetes wrote
    /// them).
    ProgressReason {
        /// No relay pod yet, or the scheduler has not placed it yet.
        PodPending,
        /// The pod is scheduled but its container does not run yet.
        PodNotReady,
        /// The relay pod runs but has not reported `TunnelsReady` yet.
        WaitingForRelay,
        /// The relay's `TunnelsReady` is for an older generation: it has not applied the current spec yet.
        RelayNotUpdated,
        /// Reconciling: the relay runs and its tunnels are not ready yet.
        Connecting,
        /// Reconciling=False: the relay is ready.
        Ready,
        /// Reconciling=False: the relay reports a failure retrying cannot fix (see `Stalled`).
        RelayStalled,
        /// Reconciling=False standalone: a tunnel is established, or a failure is permanent.
        Reconciled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_are_the_variant_names_and_parse_back() {
        let all: Vec<&str> = TunnelsReadyReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            all,
            [
                "TunnelEstablished",
                "NoTunnelEstablished",
                "ForwardNotListening",
                "NoBgpSessionEstablished",
                "AuthenticationFailed",
                "NoProposalChosen",
                "TsUnacceptable"
            ]
        );
        for r in StalledReason::ALL {
            assert_eq!(r.as_str().parse::<StalledReason>(), Ok(*r));
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!(r.as_str()));
            assert_eq!(serde_json::from_value::<StalledReason>(serde_json::json!(r.as_str())).unwrap(), *r);
        }
        assert_eq!("Unschedulable".parse::<StalledReason>(), Err(UnknownReason));
        assert!(serde_json::from_value::<DegradedReason>(serde_json::json!("tunneldown")).is_err());
        assert_eq!(ProgressReason::WaitingForRelay.to_string(), "WaitingForRelay");
    }

    #[test]
    fn the_permanent_tunnel_failures_are_the_stalled_ones() {
        for r in TunnelsReadyReason::ALL {
            let stalled = StalledReason::from_tunnels(*r);
            assert_eq!(stalled.is_some(), r.is_permanent(), "{r}");
            // The same wire string in both conditions.
            assert!(stalled.is_none_or(|s| s.as_str() == r.as_str()), "{r}");
        }
        let secret: Vec<_> = StalledReason::ALL.iter().filter(|r| r.is_secret()).collect();
        assert_eq!(secret, [&StalledReason::SecretNotFound, &StalledReason::SecretKeyNotFound]);
    }
}
