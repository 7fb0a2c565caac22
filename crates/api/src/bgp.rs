//! `spec.bgp`: dynamic routing, i.e. a BGP session with AWS inside each tunnel (for VPN connections created with
//! dynamic routing). The type with its defaults and schema, and its validation (the same rules as the CRD's CEL
//! rules). The tunnels' inside CIDRs are `spec.tunnels[].insideCidr`.

use std::net::Ipv4Addr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;
use crate::validate::Errors;
use iotrelay_types::Ipv4Cidr;

/// AWS accepts at most this many prefixes from a customer gateway per BGP session.
pub const MAX_ANNOUNCED_PREFIXES: usize = 100;
/// The 2-octet placeholder for 4-octet AS numbers (RFC 6793), never a real AS.
const AS_TRANS: i64 = 23456;

/// Dynamic routing: the relay runs a BGP session with AWS inside each tunnel, announces `announce` and learns the
/// VPC's prefixes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.awsAsn) ? self.localAsn != 64512 : self.localAsn != self.awsAsn",
        "message": "localAsn must differ from awsAsn (AWS peers over external BGP)",
        "fieldPath": ".localAsn"
    },
    {
        "rule": "!has(self.holdTime) || duration(self.holdTime) == duration('0s') || (duration(self.holdTime) >= duration('3s') && duration(self.holdTime) <= duration('65535s'))",
        "message": "holdTime must be 0s or between 3s and 65535s",
        "fieldPath": ".holdTime"
    },
    {
        "rule": "!has(self.failbackDelay) || duration(self.failbackDelay) <= duration('3600s')",
        "message": "failbackDelay must be between 0s and 3600s",
        "fieldPath": ".failbackDelay"
    }
]))]
pub struct BgpSpec {
    /// Our AS number: the customer gateway's BGP ASN in AWS (AWS's default is 65000). 4-octet ASNs are allowed;
    /// 23456 (AS_TRANS) is not.
    #[schemars(range(min = 1, max = 4_294_967_295_i64))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self != 23456", "message": "23456 (AS_TRANS) is not a real AS number"}]))]
    pub local_asn: i64,

    /// AWS's AS number: the virtual private gateway's or transit gateway's ASN (default 64512). A session whose
    /// peer names another AS is refused.
    #[serde(default = "default_aws_asn")]
    #[schemars(range(min = 1, max = 4_294_967_295_i64))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self != 23456", "message": "23456 (AS_TRANS) is not a real AS number"}]))]
    pub aws_asn: i64,

    /// Hold time proposed to AWS (AWS uses 30s); the session uses the smaller of both sides'. `0s` turns keepalives
    /// and the hold timer off; otherwise 3s..65535s.
    #[serde(default = "default_hold_time")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub hold_time: String,

    /// IPv4 prefixes announced to AWS on every tunnel, at most 100 (AWS's limit). Default: `insideAddress/32` and
    /// `gateway.localSubnets`; when set, it must cover each of `gateway.localSubnets`. In gateway mode these are
    /// the only sources the host may send from through the device and the only destinations the tunnel may
    /// deliver to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::announce_list")]
    pub announce: Option<Vec<String>>,

    /// Extra copies of `localAsn` in the AS path announced on the standby tunnel (every tunnel but the one carrying
    /// traffic: the first in `tunnels` order with its CHILD_SA and BGP session up, subject to `failbackDelay`), so
    /// that AWS sends return traffic on the same tunnel as the relay. 0..10, default 2.
    #[serde(default = "default_standby_prepend")]
    #[schemars(range(min = 0, max = 10))]
    pub standby_prepend: i32,

    /// How long a tunnel that lost its CHILD_SA or its BGP session must then stay up with its session Established,
    /// without interruption, before it is preferred again (announced plain, carrying traffic) over a tunnel later
    /// in `tunnels` order: a flapping tunnel never takes traffic back. Losing the preferred tunnel moves traffic at
    /// once, whatever this says. 0s..3600s, default 60s.
    #[serde(default = "default_failback_delay")]
    #[schemars(schema_with = "crate::schema::duration")]
    pub failback_delay: String,
}

fn default_aws_asn() -> i64 {
    64512
}
fn default_hold_time() -> String {
    "30s".into()
}
fn default_standby_prepend() -> i32 {
    2
}
fn default_failback_delay() -> String {
    "60s".into()
}
/// The longest `failbackDelay`.
const MAX_FAILBACK_DELAY: Duration = Duration::from_secs(3600);

/// `spec.bgp` with parsed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedBgp {
    pub local_asn: u32,
    pub aws_asn: u32,
    pub hold_time: Duration,
    /// `announce`, or `insideAddress/32` and `gateway.localSubnets` when unset.
    pub announce: Vec<Ipv4Cidr>,
    pub standby_prepend: u8,
    pub failback_delay: Duration,
}

/// A tunnel's inside addresses (AWS's "inside IPv4 CIDR", a /30 in 169.254.0.0/16): AWS's side is the first host,
/// ours the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelInside {
    pub cidr: Ipv4Cidr,
    pub local: Ipv4Addr,
    pub aws: Ipv4Addr,
}

impl TunnelInside {
    fn from_cidr(cidr: Ipv4Cidr) -> TunnelInside {
        let n = u32::from(cidr.addr());
        TunnelInside { cidr, local: Ipv4Addr::from(n + 2), aws: Ipv4Addr::from(n + 1) }
    }
}

/// `spec.tunnels[i].insideCidr`: a /30 inside 169.254.0.0/16.
pub(crate) fn tunnel_inside(e: &mut Errors, path: &str, s: &str) -> Option<TunnelInside> {
    let c = e.cidr(path, s)?;
    if c.prefix_len() != 30 || c.addr().octets()[..2] != [169, 254] {
        e.push(path, format!("must be a /30 inside 169.254.0.0/16, got {s:?}"));
        return None;
    }
    Some(TunnelInside::from_cidr(c))
}

fn asn(e: &mut Errors, path: &str, v: i64) -> Option<u32> {
    match u32::try_from(v) {
        Ok(0) | Err(_) => {
            e.push(path, "must be 1..4294967295");
            None
        }
        Ok(_) if v == AS_TRANS => {
            e.push(path, "23456 (AS_TRANS) is not a real AS number");
            None
        }
        Ok(a) => Some(a),
    }
}

/// Checks `spec.bgp`; `inside_address`/32 and `local_subnets` (`spec.gateway.localSubnets`) are the default
/// announcement, and an explicit `announce` must cover each of `local_subnets`.
pub(crate) fn validate_bgp(
    e: &mut Errors,
    b: &BgpSpec,
    inside_address: Option<Ipv4Addr>,
    local_subnets: &[Ipv4Cidr],
) -> Option<ValidatedBgp> {
    let local_asn = asn(e, "spec.bgp.localAsn", b.local_asn);
    let aws_asn = asn(e, "spec.bgp.awsAsn", b.aws_asn);
    if local_asn.is_some() && local_asn == aws_asn {
        e.push("spec.bgp.localAsn", "localAsn must differ from awsAsn (AWS peers over external BGP)");
    }
    let hold_time = match parse_duration(&b.hold_time) {
        Ok(d) if d.is_zero() || (Duration::from_secs(3)..=Duration::from_secs(65535)).contains(&d) => Some(d),
        Ok(_) => {
            e.push("spec.bgp.holdTime", "holdTime must be 0s or between 3s and 65535s");
            None
        }
        Err(err) => {
            e.push("spec.bgp.holdTime", err.to_string());
            None
        }
    };
    let announce = match &b.announce {
        Some(list) if list.is_empty() || list.len() > MAX_ANNOUNCED_PREFIXES => {
            e.push("spec.bgp.announce", "must have 1..100 items (AWS accepts at most 100 prefixes)");
            None
        }
        Some(list) => {
            let v: Vec<Ipv4Cidr> =
                list.iter().enumerate().filter_map(|(i, s)| e.cidr(&format!("spec.bgp.announce[{i}]"), s)).collect();
            for (i, l) in local_subnets.iter().enumerate() {
                if v.len() == list.len() && !v.iter().any(|a| a.contains_cidr(l)) {
                    e.push(
                        format!("spec.gateway.localSubnets[{i}]"),
                        format!("must be inside bgp.announce (AWS routes answers only to announced prefixes), got {l}"),
                    );
                }
            }
            (v.len() == list.len()).then_some(v)
        }
        None => inside_address.map(|a| {
            let mut v = vec![Ipv4Cidr::new(a, 32).unwrap_or(Ipv4Cidr::ANY)];
            for l in local_subnets {
                if !v.contains(l) {
                    v.push(*l);
                }
            }
            v
        }),
    };
    let standby_prepend = match u8::try_from(b.standby_prepend) {
        Ok(p) if p <= 10 => Some(p),
        _ => {
            e.push("spec.bgp.standbyPrepend", "must be 0..10");
            None
        }
    };
    let failback_delay = match parse_duration(&b.failback_delay) {
        Ok(d) if d <= MAX_FAILBACK_DELAY => Some(d),
        Ok(_) => {
            e.push("spec.bgp.failbackDelay", "failbackDelay must be between 0s and 3600s");
            None
        }
        Err(err) => {
            e.push("spec.bgp.failbackDelay", err.to_string());
            None
        }
    };
    Some(ValidatedBgp {
        local_asn: local_asn?,
        aws_asn: aws_asn?,
        hold_time: hold_time?,
        announce: announce?,
        standby_prepend: standby_prepend?,
        failback_delay: failback_delay?,
    })
}
