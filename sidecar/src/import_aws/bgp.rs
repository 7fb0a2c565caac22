//! Dynamic routing: when AWS's document has `<bgp>` elements (a VPN connection created with dynamic routing),
//! `spec.bgp` (our ASN, AWS's ASN, the hold time) and each tunnel's `insideCidr` come from it. Both tunnels must
//! agree on the ASNs and the hold time (one setting serves both). Static-routing documents give `None`.

use std::net::Ipv4Addr;

use iotrelay_api::BgpSpec;

use super::aws::{AwsTunnel, Field, ImportError};

/// `spec.bgp` from the document, each tunnel's `insideCidr`, and (spec path, input) origins for error messages.
pub struct Imported {
    pub spec: BgpSpec,
    pub inside_cidrs: Vec<String>,
    pub origins: Vec<(String, String)>,
}

/// `None` when no tunnel has a `<bgp>` element.
pub fn import(tunnels: &[AwsTunnel]) -> Result<Option<Imported>, ImportError> {
    if tunnels.iter().all(|t| t.bgp.local_asn.is_none() && t.bgp.aws_asn.is_none()) {
        return Ok(None);
    }
    let mut origins = Vec::new();
    let mut inside_cidrs = Vec::new();
    let mut shared: Option<(i64, i64, u64)> = None;
    for (i, t) in tunnels.iter().enumerate() {
        let b = &t.bgp;
        let local = asn(t.need(&b.local_asn, "the customer gateway's BGP ASN (customer_gateway/bgp/asn)")?)?;
        let aws = asn(t.need(&b.aws_asn, "the VPN gateway's BGP ASN (vpn_gateway/bgp/asn)")?)?;
        let hold = match &b.hold_time {
            Some(f) => f.seconds()?,
            None => 30,
        };
        match shared {
            None => {
                shared = Some((local, aws, hold));
                origins.push(("spec.bgp.localAsn".to_string(), at(&b.local_asn)));
                origins.push(("spec.bgp.awsAsn".to_string(), at(&b.aws_asn)));
                origins.push(("spec.bgp.holdTime".to_string(), at(&b.hold_time)));
            }
            Some(s) if s != (local, aws, hold) => {
                return Err(ImportError::new(
                    t.at.clone(),
                    "the tunnels differ in BGP ASNs or hold time: not one VPN connection",
                ));
            }
            Some(_) => {}
        }
        let ip = t.need(&b.inside_address, "the customer gateway's inside address")?;
        let len = t.need(&b.inside_prefix, "the inside address's network_cidr")?;
        let addr = ip.ipv4()?;
        let Ok(30) = len.value.trim().parse::<u8>() else {
            return Err(ImportError::new(len.at.clone(), "AWS's tunnel inside networks are /30"));
        };
        let net = Ipv4Addr::from(u32::from(addr) & !3);
        inside_cidrs.push(format!("{net}/30"));
        origins.push((format!("spec.tunnels[{i}].insideCidr"), ip.at.clone()));
    }
    let Some((local_asn, aws_asn, hold)) = shared else { return Ok(None) };
    let spec = BgpSpec {
        local_asn,
        aws_asn,
        hold_time: iotrelay_api::format_duration(std::time::Duration::from_secs(hold)),
        announce: None,
        standby_prepend: 2,
        failback_delay: "60s".into(),
    };
    Ok(Some(Imported { spec, inside_cidrs, origins }))
}

fn asn(f: &Field) -> Result<i64, ImportError> {
    match f.value.trim().parse::<u32>() {
        Ok(a) if a > 0 => Ok(i64::from(a)),
        _ => Err(ImportError::new(f.at.clone(), "expected an AS number 1..4294967295")),
    }
}

fn at(f: &Option<Field>) -> String {
    f.as_ref().map_or_else(|| "the default hold time (30 s)".to_string(), |f| f.at.clone())
}
