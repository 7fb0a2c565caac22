//! Reads the "Generic" text AWS's console offers as a VPN connection's "Download configuration": per tunnel an
//! `IPSec Tunnel #N` heading, an IKE section (`#1: Internet Key Exchange Configuration`), an IPsec section
//! (`#2: IPSec Configuration`, with the DPD settings) and the tunnel's outside and inside addresses, each value on a
//! line `  - Name : value`. Prose between the values is ignored. Errors name the line.

use zeroize::Zeroizing;

use super::aws::{AwsTunnel, Field, ImportError, Psk};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Other,
    Ike,
    Ipsec,
    Outside,
    Inside,
}

/// The tunnels described by the text, in order.
pub fn parse(text: &str) -> Result<Vec<AwsTunnel>, ImportError> {
    let mut tunnels: Vec<AwsTunnel> = Vec::new();
    let mut section = Section::Other;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        let lower = line.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("ipsec tunnel #") {
            let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if n.is_empty() {
                return Err(ImportError::new(format!("line {line_no}"), "expected a tunnel number after \"#\""));
            }
            tunnels.push(AwsTunnel::new(format!("IPSec Tunnel #{n} (line {line_no})")));
            section = Section::Other;
            continue;
        }
        if let Some(s) = heading(&lower) {
            section = s;
            continue;
        }
        let Some((key, value)) = key_value(line) else { continue };
        let Some(t) = tunnels.last_mut() else { continue };
        let at = format!("line {line_no} ({})", key_name(line));
        let field = || Some(Field::new(value, at.clone()));
        let slot = match (section, key.as_str()) {
            (_, "dpd interval" | "dead peer detection interval") => &mut t.dpd_interval,
            (_, "dpd retries" | "dead peer detection retries") => &mut t.dpd_retries,
            (Section::Ike, "pre-shared key") => {
                if t.psk.is_some() {
                    return Err(ImportError::new(at, format!("a second pre-shared key in {}", t.at)));
                }
                t.psk = Some(Psk { value: Zeroizing::new(value.to_string()), at });
                continue;
            }
            (Section::Ike, "authentication algorithm") => &mut t.ike.integrity,
            (Section::Ike, "encryption algorithm") => &mut t.ike.encryption,
            (Section::Ike, "lifetime") => &mut t.ike.lifetime,
            (Section::Ike, "diffie-hellman" | "diffie-hellman group") => &mut t.ike.dh_group,
            (Section::Ipsec, "authentication algorithm") => &mut t.ipsec.integrity,
            (Section::Ipsec, "encryption algorithm") => &mut t.ipsec.encryption,
            (Section::Ipsec, "lifetime") => &mut t.ipsec.lifetime,
            (Section::Ipsec, "perfect forward secrecy") => &mut t.ipsec.dh_group,
            (Section::Outside, "customer gateway") => &mut t.customer_gateway,
            (Section::Outside, "virtual private gateway" | "transit gateway" | "aws gateway") => &mut t.vpn_gateway,
            (Section::Inside | Section::Other | Section::Ike | Section::Ipsec | Section::Outside, _) => continue,
        };
        if let Some(prev) = slot {
            return Err(ImportError::new(at, format!("repeats {} in {}", prev.at, t.at)));
        }
        *slot = field();
    }
    if tunnels.is_empty() {
        return Err(ImportError::new(
            "text",
            "no \"IPSec Tunnel #1\" heading: not AWS's Generic configuration download (use --xml for the XML)",
        ));
    }
    Ok(tunnels)
}

/// A section heading, e.g. `#1: Internet Key Exchange Configuration` or `Outside IP Addresses:`.
fn heading(lower: &str) -> Option<Section> {
    if lower.starts_with("outside ip addresses") {
        return Some(Section::Outside);
    }
    if lower.starts_with("inside ip addresses") {
        return Some(Section::Inside);
    }
    let rest = lower.strip_prefix('#')?;
    let (num, title) = rest.split_once(':')?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let title = title.trim();
    Some(if title.starts_with("internet key exchange") {
        Section::Ike
    } else if title.starts_with("ipsec configuration") {
        Section::Ipsec
    } else {
        Section::Other
    })
}

/// `- Name   : value` (the dash optional) as (normalized name, value). Lines without a value are not pairs.
fn key_value(line: &str) -> Option<(String, &str)> {
    let (k, v) = line.split_once(':')?;
    let v = v.trim();
    let k = k.trim().trim_start_matches('-').trim();
    if k.is_empty() || v.is_empty() || k.len() > 48 {
        return None;
    }
    Some((k.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase(), v))
}

/// The name part of a pair, as written (for error messages).
fn key_name(line: &str) -> String {
    let k = line.split(':').next().unwrap_or("").trim().trim_start_matches('-').trim();
    k.split_whitespace().collect::<Vec<_>>().join(" ")
}
