//! What AWS says about a VPN connection, read from either of its formats (`xml.rs`, `text.rs`), and how AWS's
//! algorithm names map onto iotrelay's proposal tokens. Every value remembers where it came from, so an error can
//! name the element or line that caused it. The pre-shared keys live only in [`Psk`], which never prints them.

use std::fmt;
use std::net::Ipv4Addr;

use zeroize::Zeroizing;

/// Why an AWS document could not be imported: the input element or line, and what is wrong. Never holds a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct ImportError {
    /// The input element (`ipsec_tunnel[1]/ike/lifetime, line 30`), line (`line 30 (Lifetime)`) or flag.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

impl ImportError {
    pub fn new(at: impl Into<String>, message: impl Into<String>) -> Self {
        ImportError { at: at.into(), message: message.into() }
    }
}

/// One value as written in the input, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub value: String,
    pub at: String,
}

impl Field {
    pub fn new(value: impl Into<String>, at: impl Into<String>) -> Self {
        Field { value: value.into(), at: at.into() }
    }
    fn error(&self, message: impl Into<String>) -> ImportError {
        ImportError::new(self.at.clone(), message)
    }
    /// The value quoted for an error message: printable ASCII only, at most 64 characters.
    fn shown(&self) -> String {
        let s: String = self.value.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(64).collect();
        format!("{s:?}")
    }
    pub fn ipv4(&self) -> Result<Ipv4Addr, ImportError> {
        self.value.trim().parse().map_err(|_| self.error(format!("expected an IPv4 address, got {}", self.shown())))
    }
    /// A number of seconds, written `28800` or `28800 seconds`.
    pub fn seconds(&self) -> Result<u64, ImportError> {
        let v = self.value.trim();
        let n = v.strip_suffix("seconds").or_else(|| v.strip_suffix("second")).unwrap_or(v).trim();
        n.parse().map_err(|_| self.error(format!("expected a number of seconds, got {}", self.shown())))
    }
}

/// A tunnel's pre-shared key. `Debug` shows only its length; the value is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk {
    pub value: Zeroizing<String>,
    pub at: String,
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Psk(<{} characters redacted> at {})", self.value.len(), self.at)
    }
}

impl Psk {
    /// AWS's rule: 8..64 characters of letters, digits, `.` and `_`, not starting with `0`. The message never
    /// quotes the key.
    pub fn check(&self) -> Result<(), ImportError> {
        let v = self.value.as_str();
        let why = if v.is_empty() {
            Some("the pre-shared key is empty")
        } else if v.len() < 8 || v.len() > 64 {
            Some("the pre-shared key must be 8..64 characters long (AWS's rule)")
        } else if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_') {
            Some("the pre-shared key has characters AWS does not allow (only letters, digits, '.' and '_')")
        } else if v.starts_with('0') {
            Some("the pre-shared key starts with '0', which AWS does not allow")
        } else {
            None
        };
        why.map_or(Ok(()), |m| Err(ImportError::new(self.at.clone(), m)))
    }
}

/// Phase 1 (IKE SA) or phase 2 (IPsec SA) settings of one tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Phase {
    pub encryption: Option<Field>,
    pub integrity: Option<Field>,
    /// IKE: the Diffie-Hellman group; IPsec: the PFS group (`none` or absent: no PFS).
    pub dh_group: Option<Field>,
    pub lifetime: Option<Field>,
}

/// One `ipsec_tunnel` / "IPSec Tunnel #N".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsTunnel {
    /// Where the tunnel is described (`ipsec_tunnel[1]`, `IPSec Tunnel #1 (line 20)`); used for missing values.
    pub at: String,
    /// The customer gateway's outside address: the address AWS expects IKE from (the NAT's, behind NAT).
    pub customer_gateway: Option<Field>,
    /// The AWS tunnel endpoint's outside address.
    pub vpn_gateway: Option<Field>,
    pub psk: Option<Psk>,
    pub ike: Phase,
    pub ipsec: Phase,
    pub dpd_interval: Option<Field>,
    pub dpd_retries: Option<Field>,
    /// Dynamic routing only (read by `bgp.rs`): BGP settings and inside addresses.
    pub bgp: BgpFields,
}

/// What a dynamic-routing tunnel says about its BGP session: `customer_gateway/bgp/asn`, `vpn_gateway/bgp/asn`,
/// `vpn_gateway/bgp/hold_time`, and our inside address with its prefix length
/// (`customer_gateway/tunnel_inside_address/{ip_address,network_cidr}`). All absent for static routing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BgpFields {
    pub local_asn: Option<Field>,
    pub aws_asn: Option<Field>,
    pub hold_time: Option<Field>,
    pub inside_address: Option<Field>,
    pub inside_prefix: Option<Field>,
}

impl AwsTunnel {
    pub fn new(at: impl Into<String>) -> Self {
        AwsTunnel {
            at: at.into(),
            customer_gateway: None,
            vpn_gateway: None,
            psk: None,
            ike: Phase::default(),
            ipsec: Phase::default(),
            dpd_interval: None,
            dpd_retries: None,
            bgp: BgpFields::default(),
        }
    }
    /// A required value, or an error naming what is missing (`what` in the input's own words).
    pub fn need<'a>(&self, f: &'a Option<Field>, what: &str) -> Result<&'a Field, ImportError> {
        f.as_ref().ok_or_else(|| ImportError::new(self.at.clone(), format!("missing {what}")))
    }
}

/// Splits a value that lists several algorithms (`aes-128-cbc, aes-256-cbc`).
fn items(f: &Field) -> Vec<String> {
    f.value.split([',', '/']).map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect()
}

/// One encryption algorithm: its token and whether it is an AEAD (GCM) cipher.
fn encryption_token(name: &str) -> Option<(&'static str, bool)> {
    let n: String = name.chars().filter(|c| !c.is_whitespace()).collect::<String>().replace('_', "-");
    Some(match n.as_str() {
        "aes-128-cbc" | "aes128-cbc" | "aes128" | "aes-128" | "aes-cbc-128" => ("aes128", false),
        "aes-256-cbc" | "aes256-cbc" | "aes256" | "aes-256" | "aes-cbc-256" => ("aes256", false),
        "aes-128-gcm-16" | "aes128-gcm-16" | "aes-128-gcm" | "aes128gcm16" | "aes-gcm-128" => ("aes128gcm16", true),
        "aes-256-gcm-16" | "aes256-gcm-16" | "aes-256-gcm" | "aes256gcm16" | "aes-gcm-256" => ("aes256gcm16", true),
        _ => return None,
    })
}

/// One integrity algorithm as its hash (`sha1`, `sha256`, ...): AWS writes `sha1`, `SHA2-256`, `hmac-sha1-96`,
/// `hmac-sha-256-128` and similar.
fn integrity_hash(name: &str) -> Option<&'static str> {
    let n: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>();
    let n = n.strip_prefix("hmac").unwrap_or(&n);
    Some(match n {
        "sha1" | "sha" | "sha196" | "sha1160" => "sha1",
        "sha256" | "sha2256" | "sha256128" | "sha2256128" => "sha256",
        "sha384" | "sha2384" | "sha384192" | "sha2384192" => "sha384",
        "sha512" | "sha2512" | "sha512256" | "sha2512256" => "sha512",
        _ => return None,
    })
}

/// A Diffie-Hellman group: `group2`, `Group 14`, `Diffie-Hellman Group 2`, `14`; `None` for no PFS.
fn dh_token(name: &str) -> Result<Option<&'static str>, ()> {
    let n = name.to_ascii_lowercase();
    if matches!(n.trim(), "none" | "disabled" | "no" | "off" | "n/a") {
        return Ok(None);
    }
    let n = n.replace("diffie-hellman", "").replace("group", "").replace("dh", "");
    let Ok(g) = n.trim().parse::<u32>() else { return Err(()) };
    Ok(Some(match g {
        2 => "modp1024",
        5 => "modp1536",
        14 => "modp2048",
        15 => "modp3072",
        16 => "modp4096",
        17 => "modp6144",
        18 => "modp8192",
        19 => "ecp256",
        20 => "ecp384",
        21 => "ecp521",
        22 => "modp1024s160",
        23 => "modp2048s224",
        24 => "modp2048s256",
        _ => return Err(()),
    }))
}

/// Whether the proposal is for the IKE SA (integrity of an AEAD cipher becomes the PRF) or for ESP.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ike,
    Esp,
}

/// A phase's settings as proposals in iotrelay's syntax: one proposal for the CBC ciphers (with integrity) and one
/// for the GCM ciphers (IKE: the integrity hashes as PRFs; ESP: no integrity), each with the DH group if any.
pub fn proposals(t: &AwsTunnel, p: &Phase, kind: Kind, section: &str) -> Result<Vec<String>, ImportError> {
    let enc = t.need(&p.encryption, &format!("{section} encryption algorithm"))?;
    let mut cbc = Vec::new();
    let mut gcm = Vec::new();
    for e in items(enc) {
        match encryption_token(&e) {
            Some((tok, false)) => cbc.push(tok),
            Some((tok, true)) => gcm.push(tok),
            None => {
                return Err(enc.error(format!(
                    "unknown encryption algorithm {:?} (AWS offers aes-128-cbc, aes-256-cbc, aes-128-gcm-16, \
                     aes-256-gcm-16)",
                    Field::new(e, "").shown().trim_matches('"')
                )));
            }
        }
    }
    if cbc.is_empty() && gcm.is_empty() {
        return Err(enc.error("no encryption algorithm given"));
    }
    let mut hashes = Vec::new();
    if let Some(i) = &p.integrity {
        for h in items(i) {
            let tok = integrity_hash(&h).ok_or_else(|| {
                i.error(format!(
                    "unknown integrity algorithm {} (AWS offers sha1, sha2-256, sha2-384, sha2-512)",
                    Field::new(h.clone(), "").shown()
                ))
            })?;
            if !hashes.contains(&tok) {
                hashes.push(tok);
            }
        }
    }
    let need_hashes = !cbc.is_empty() || kind == Kind::Ike;
    if need_hashes && hashes.is_empty() {
        let what = if cbc.is_empty() { "(the PRF of an AES-GCM IKE SA)" } else { "(needed with AES-CBC)" };
        t.need(&p.integrity, &format!("{section} authentication algorithm {what}"))?;
        return Err(ImportError::new(t.at.clone(), format!("{section}: empty authentication algorithm")));
    }
    let dh = match &p.dh_group {
        Some(f) => {
            let mut groups = Vec::new();
            for g in items(f) {
                match dh_token(&g) {
                    Ok(Some(tok)) => groups.push(tok),
                    Ok(None) => {}
                    Err(()) => {
                        return Err(f.error(format!(
                            "unknown Diffie-Hellman group {} (AWS offers groups 2, 5, 14-24)",
                            Field::new(g.clone(), "").shown()
                        )));
                    }
                }
            }
            groups
        }
        None => Vec::new(),
    };
    if kind == Kind::Ike && dh.is_empty() {
        t.need(&p.dh_group, &format!("{section} Diffie-Hellman group"))?;
        return Err(ImportError::new(t.at.clone(), format!("{section}: the IKE SA needs a Diffie-Hellman group")));
    }
    let mut out = Vec::new();
    if !cbc.is_empty() {
        out.push([cbc.clone(), hashes.clone(), dh.clone()].concat().join("-"));
    }
    if !gcm.is_empty() {
        let prfs: Vec<String> = match kind {
            Kind::Ike => hashes.iter().map(|h| format!("prf{h}")).collect(),
            Kind::Esp => Vec::new(),
        };
        let prfs: Vec<&str> = prfs.iter().map(String::as_str).collect();
        out.push([gcm, prfs, dh].concat().join("-"));
    }
    Ok(out)
}

/// A lifetime in seconds as a duration string (`28800` -> `8h`, `3600` -> `1h`, `1000` -> `16m40s`).
pub fn lifetime(t: &AwsTunnel, f: &Option<Field>, what: &str) -> Result<(String, u64), ImportError> {
    let f = t.need(f, what)?;
    let s = f.seconds()?;
    if s == 0 {
        return Err(f.error("a lifetime of 0 seconds"));
    }
    Ok((iotrelay_api::format_duration(std::time::Duration::from_secs(s)), s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(enc: &str, integ: Option<&str>, dh: Option<&str>) -> (AwsTunnel, Phase) {
        let p = Phase {
            encryption: Some(Field::new(enc, "enc")),
            integrity: integ.map(|i| Field::new(i, "integ")),
            dh_group: dh.map(|d| Field::new(d, "dh")),
            lifetime: None,
        };
        (AwsTunnel::new("ipsec_tunnel[1]"), p)
    }

    /// encryption, integrity, DH group, kind, expected proposals.
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Kind, &'a [&'a str]);

    #[test]
    fn aws_names_map_to_proposals() {
        let cases: &[Case] = &[
            ("aes-128-cbc", Some("sha1"), Some("group2"), Kind::Ike, &["aes128-sha1-modp1024"]),
            ("aes-128-cbc", Some("hmac-sha1-96"), Some("group2"), Kind::Esp, &["aes128-sha1-modp1024"]),
            ("aes-256-cbc", Some("SHA2-256"), Some("Group 14"), Kind::Ike, &["aes256-sha256-modp2048"]),
            (
                "aes-256-cbc",
                Some("hmac-sha-256-128"),
                Some("Diffie-Hellman Group 14"),
                Kind::Esp,
                &["aes256-sha256-modp2048"],
            ),
            ("aes-128-gcm-16", Some("sha2-256"), Some("group19"), Kind::Ike, &["aes128gcm16-prfsha256-ecp256"]),
            ("aes-256-gcm-16", None, Some("group20"), Kind::Esp, &["aes256gcm16-ecp384"]),
            ("aes-128-cbc", Some("sha1"), Some("none"), Kind::Esp, &["aes128-sha1"]),
            (
                "aes-128-cbc, aes-256-gcm-16",
                Some("sha1, sha2-384"),
                Some("group2, group 24"),
                Kind::Ike,
                &["aes128-sha1-sha384-modp1024-modp2048s256", "aes256gcm16-prfsha1-prfsha384-modp1024-modp2048s256"],
            ),
        ];
        for (enc, integ, dh, kind, want) in cases {
            let (t, p) = tunnel(enc, *integ, *dh);
            let got = proposals(&t, &p, *kind, "IKE").unwrap();
            assert_eq!(got, *want, "{enc} {integ:?} {dh:?}");
            // Every result is a proposal the crypto crate accepts.
            for g in &got {
                match kind {
                    Kind::Ike => drop(iotrelay_crypto::proposal::IkeProposal::parse(g).unwrap()),
                    Kind::Esp => drop(iotrelay_crypto::proposal::EspProposal::parse(g).unwrap()),
                }
            }
        }
    }

    #[test]
    fn unknown_names_are_errors_naming_the_input() {
        let (t, p) = tunnel("aes-129-cbc", Some("sha1"), Some("group2"));
        let e = proposals(&t, &p, Kind::Ike, "IKE").unwrap_err();
        assert_eq!(e.at, "enc");
        assert!(e.message.contains("\"aes-129-cbc\""), "{e}");
        let (t, p) = tunnel("aes-128-cbc", Some("md5"), Some("group2"));
        assert_eq!(proposals(&t, &p, Kind::Ike, "IKE").unwrap_err().at, "integ");
        let (t, p) = tunnel("aes-128-cbc", Some("sha1"), Some("group 3"));
        assert_eq!(proposals(&t, &p, Kind::Ike, "IKE").unwrap_err().at, "dh");
        let (t, p) = tunnel("aes-128-cbc", None, Some("group2"));
        let e = proposals(&t, &p, Kind::Esp, "IPsec").unwrap_err();
        assert_eq!(e.at, "ipsec_tunnel[1]");
        assert!(e.message.contains("missing IPsec authentication algorithm"), "{e}");
        let (t, p) = tunnel("aes-128-cbc", Some("sha1"), None);
        assert!(proposals(&t, &p, Kind::Ike, "IKE").unwrap_err().message.contains("Diffie-Hellman"));
    }

    #[test]
    fn psk_rules_are_aws_rules_and_never_quote_the_key() {
        let psk = |v: &str| Psk { value: Zeroizing::new(v.to_string()), at: "here".into() };
        assert!(psk("abc.DEF_123").check().is_ok());
        for bad in ["short", "0starts_with_zero", "has-dash-inside", "has space inside", &"x".repeat(65)] {
            let e = psk(bad).check().unwrap_err();
            assert_eq!(e.at, "here");
            assert!(!e.to_string().contains(bad), "{e}");
        }
        assert!(!format!("{:?}", psk("abc.DEF_123")).contains("abc.DEF_123"));
    }
}
