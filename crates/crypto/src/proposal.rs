//! Proposal strings in strongSwan syntax, as AWS's downloadable configurations write them:
//! `aes128-sha1-modp1024`, `aes256-sha256-modp2048`, `aes256gcm16-prfsha384-ecp384`.
//!
//! Tokens (separated by `-`): encryption `aes128`, `aes256`, `aes128gcm16`, `aes256gcm16` (also `aes128gcm128`,
//! `aes256gcm128`); integrity `sha1`, `sha256`, `sha384`, `sha512` (aliases `sha`, `sha2_256`, `sha2_384`,
//! `sha2_512`; for IKE also the PRF when no `prf*` token is given); PRF `prfsha1`, `prfsha256`, `prfsha384`, `prfsha512`; DH `modp1024`, `modp1536`, `modp2048`,
//! `modp3072`, `modp4096`, `modp6144`, `modp8192`, `modp1024s160`, `modp2048s224`, `modp2048s256`, `ecp256`,
//! `ecp384`, `ecp521`, `curve25519` (alias `x25519`); ESP also `noesn`. Tokens are case-insensitive; `Display`
//! writes the canonical lower-case names above, in the order encryption, integrity, PRF, DH.

use crate::{DhGroup, Encr, Integ, Prf};

/// A bad proposal string; names the offending token. Displayed e.g. as
/// `unknown algorithm "aes129" in proposal "aes129-sha1-modp1024"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} {token:?} in proposal {proposal:?}")]
pub struct ProposalError {
    pub proposal: String,
    pub token: String,
    pub reason: &'static str,
}

/// One IKE SA proposal: any combination of the listed transforms is acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeProposal {
    pub encr: Vec<Encr>,
    /// Empty for AEAD-only proposals.
    pub integ: Vec<Integ>,
    pub prf: Vec<Prf>,
    pub dh: Vec<DhGroup>,
}

/// One ESP (CHILD_SA) proposal. `dh` empty = no PFS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspProposal {
    pub encr: Vec<Encr>,
    pub integ: Vec<Integ>,
    pub dh: Vec<DhGroup>,
}

enum Token {
    Encr(Encr),
    Integ(Integ),
    Prf(Prf),
    Dh(DhGroup),
    NoEsn,
}

fn token(t: &str) -> Option<Token> {
    Some(match t {
        "aes128" => Token::Encr(Encr::AesCbc128),
        "aes256" => Token::Encr(Encr::AesCbc256),
        "aes128gcm16" | "aes128gcm128" => Token::Encr(Encr::AesGcm16_128),
        "aes256gcm16" | "aes256gcm128" => Token::Encr(Encr::AesGcm16_256),
        "sha1" | "sha" => Token::Integ(Integ::HmacSha1_96),
        "sha256" | "sha2_256" => Token::Integ(Integ::HmacSha256_128),
        "sha384" | "sha2_384" => Token::Integ(Integ::HmacSha384_192),
        "sha512" | "sha2_512" => Token::Integ(Integ::HmacSha512_256),
        "prfsha1" => Token::Prf(Prf::HmacSha1),
        "prfsha256" => Token::Prf(Prf::HmacSha256),
        "prfsha384" => Token::Prf(Prf::HmacSha384),
        "prfsha512" => Token::Prf(Prf::HmacSha512),
        "modp1024" => Token::Dh(DhGroup::Modp1024),
        "modp1536" => Token::Dh(DhGroup::Modp1536),
        "modp2048" => Token::Dh(DhGroup::Modp2048),
        "modp3072" => Token::Dh(DhGroup::Modp3072),
        "modp4096" => Token::Dh(DhGroup::Modp4096),
        "modp6144" => Token::Dh(DhGroup::Modp6144),
        "modp8192" => Token::Dh(DhGroup::Modp8192),
        "modp1024s160" => Token::Dh(DhGroup::Modp1024s160),
        "modp2048s224" => Token::Dh(DhGroup::Modp2048s224),
        "modp2048s256" => Token::Dh(DhGroup::Modp2048s256),
        "ecp256" => Token::Dh(DhGroup::Ecp256),
        "ecp384" => Token::Dh(DhGroup::Ecp384),
        "ecp521" => Token::Dh(DhGroup::Ecp521),
        "curve25519" | "x25519" => Token::Dh(DhGroup::Curve25519),
        "noesn" => Token::NoEsn,
        _ => return None,
    })
}

fn push<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

struct Parsed<'a> {
    encr: Vec<Encr>,
    integ: Vec<Integ>,
    prf: Vec<Prf>,
    dh: Vec<DhGroup>,
    /// The first token of each kind as written (for error messages), and the last token.
    encr_tok: &'a str,
    integ_tok: Option<&'a str>,
    prf_tok: Option<&'a str>,
    noesn_tok: Option<&'a str>,
    last_tok: &'a str,
}

fn error(proposal: &str, token: &str, reason: &'static str) -> ProposalError {
    ProposalError { proposal: proposal.to_string(), token: token.to_string(), reason }
}

fn parse_tokens(s: &str) -> Result<Parsed<'_>, ProposalError> {
    let err = |token: &str, reason: &'static str| error(s, token, reason);
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(err("", "empty proposal:"));
    }
    let mut p = Parsed {
        encr: vec![],
        integ: vec![],
        prf: vec![],
        dh: vec![],
        encr_tok: "",
        integ_tok: None,
        prf_tok: None,
        noesn_tok: None,
        last_tok: "",
    };
    let mut first_tok = None;
    let mut kind_tok: Option<(&str, bool)> = None;
    for t in trimmed.split('-') {
        first_tok.get_or_insert(t);
        p.last_tok = t;
        let lower = t.to_ascii_lowercase();
        match token(&lower) {
            Some(Token::Encr(e)) => {
                match kind_tok {
                    None => kind_tok = Some((t, e.is_aead())),
                    Some((_, aead)) if aead != e.is_aead() => {
                        return Err(err(t, "AEAD (gcm) and non-AEAD encryption in one proposal (split it in two):"));
                    }
                    Some(_) => {}
                }
                push(&mut p.encr, e)
            }
            Some(Token::Integ(i)) => {
                p.integ_tok.get_or_insert(t);
                push(&mut p.integ, i)
            }
            Some(Token::Prf(f)) => {
                p.prf_tok.get_or_insert(t);
                push(&mut p.prf, f)
            }
            Some(Token::Dh(g)) => push(&mut p.dh, g),
            Some(Token::NoEsn) => {
                p.noesn_tok.get_or_insert(t);
            }
            None if lower == "esn" => return Err(err(t, "extended sequence numbers are not supported:")),
            None if t.is_empty() => return Err(err(t, "empty algorithm (two dashes in a row?)")),
            None => return Err(err(t, "unknown algorithm")),
        }
    }
    match kind_tok {
        Some((t, _)) => p.encr_tok = t,
        None => {
            return Err(err(first_tok.unwrap_or(""), "no encryption algorithm (e.g. aes128, aes256gcm16) before"));
        }
    }
    Ok(p)
}

impl IkeProposal {
    /// Parses strongSwan syntax. Rules: at least one encryption algorithm; at least one PRF (explicit or implied by
    /// an integrity token); at least one DH group; integrity required with CBC and not allowed with only GCM.
    /// AEAD and non-AEAD encryption cannot be mixed in one proposal (write two). Duplicates are dropped; order is
    /// preference order. Tokens are case-insensitive.
    pub fn parse(s: &str) -> Result<Self, ProposalError> {
        let mut p = parse_tokens(s)?;
        if let Some(t) = p.noesn_tok {
            return Err(error(s, t, "ESN is an ESP option, not IKE:"));
        }
        if p.encr[0].is_aead() {
            if let Some(t) = p.integ_tok {
                return Err(error(
                    s,
                    t,
                    "an integrity algorithm is not allowed with AES-GCM (write prfsha* for the PRF):",
                ));
            }
        } else if p.integ.is_empty() {
            return Err(error(s, p.encr_tok, "no integrity algorithm (e.g. sha256) for"));
        }
        if p.prf.is_empty() {
            for i in &p.integ {
                push(&mut p.prf, prf_for(*i));
            }
        }
        if p.prf.is_empty() {
            return Err(error(s, p.encr_tok, "no PRF (e.g. prfsha256) for"));
        }
        if p.dh.is_empty() {
            return Err(error(s, p.last_tok, "no Diffie-Hellman group (e.g. modp2048, ecp256) after"));
        }
        Ok(IkeProposal { encr: p.encr, integ: p.integ, prf: p.prf, dh: p.dh })
    }

    /// Parses a list, naming the first bad entry.
    pub fn parse_list<S: AsRef<str>>(list: &[S]) -> Result<Vec<Self>, ProposalError> {
        list.iter().map(|s| Self::parse(s.as_ref())).collect()
    }

    /// The defaults ([`DEFAULT_IKE_PROPOSALS`]).
    pub fn defaults() -> Vec<Self> {
        Self::parse_list(DEFAULT_IKE_PROPOSALS).expect("built-in defaults parse")
    }
}

/// [`IkeProposal::parse_list`] for a configuration's list of strings.
pub fn ike_proposals_from(list: &[String]) -> Result<Vec<IkeProposal>, ProposalError> {
    IkeProposal::parse_list(list)
}

/// [`EspProposal::parse_list`] for a configuration's list of strings.
pub fn esp_proposals_from(list: &[String]) -> Result<Vec<EspProposal>, ProposalError> {
    EspProposal::parse_list(list)
}

fn prf_for(i: Integ) -> Prf {
    match i {
        Integ::HmacSha1_96 => Prf::HmacSha1,
        Integ::HmacSha256_128 => Prf::HmacSha256,
        Integ::HmacSha384_192 => Prf::HmacSha384,
        Integ::HmacSha512_256 => Prf::HmacSha512,
    }
}

impl EspProposal {
    /// Parses strongSwan syntax. Integrity required with CBC, not allowed with only GCM; DH optional (PFS); no PRF;
    /// `noesn` accepted (and implied: ESN is not supported), `esn` rejected. AEAD and non-AEAD encryption cannot
    /// be mixed in one proposal. Duplicates are dropped; order is preference order. Tokens are case-insensitive.
    pub fn parse(s: &str) -> Result<Self, ProposalError> {
        let p = parse_tokens(s)?;
        if let Some(t) = p.prf_tok {
            return Err(error(s, t, "a PRF is an IKE algorithm, not ESP:"));
        }
        if p.encr[0].is_aead() {
            if let Some(t) = p.integ_tok {
                return Err(error(s, t, "an integrity algorithm is not allowed with AES-GCM:"));
            }
        } else if p.integ.is_empty() {
            return Err(error(s, p.encr_tok, "no integrity algorithm (e.g. sha256) for"));
        }
        Ok(EspProposal { encr: p.encr, integ: p.integ, dh: p.dh })
    }

    /// Parses a list, naming the first bad entry.
    pub fn parse_list<S: AsRef<str>>(list: &[S]) -> Result<Vec<Self>, ProposalError> {
        list.iter().map(|s| Self::parse(s.as_ref())).collect()
    }

    /// The defaults ([`DEFAULT_ESP_PROPOSALS`]).
    pub fn defaults() -> Vec<Self> {
        Self::parse_list(DEFAULT_ESP_PROPOSALS).expect("built-in defaults parse")
    }
}

/// The canonical token of an encryption algorithm.
pub fn encr_token(e: Encr) -> &'static str {
    match e {
        Encr::AesCbc128 => "aes128",
        Encr::AesCbc256 => "aes256",
        Encr::AesGcm16_128 => "aes128gcm16",
        Encr::AesGcm16_256 => "aes256gcm16",
    }
}

pub fn integ_token(i: Integ) -> &'static str {
    match i {
        Integ::HmacSha1_96 => "sha1",
        Integ::HmacSha256_128 => "sha256",
        Integ::HmacSha384_192 => "sha384",
        Integ::HmacSha512_256 => "sha512",
    }
}

pub fn prf_token(p: Prf) -> &'static str {
    match p {
        Prf::HmacSha1 => "prfsha1",
        Prf::HmacSha256 => "prfsha256",
        Prf::HmacSha384 => "prfsha384",
        Prf::HmacSha512 => "prfsha512",
    }
}

pub fn dh_token(g: DhGroup) -> &'static str {
    match g {
        DhGroup::Modp1024 => "modp1024",
        DhGroup::Modp1536 => "modp1536",
        DhGroup::Modp2048 => "modp2048",
        DhGroup::Modp3072 => "modp3072",
        DhGroup::Modp4096 => "modp4096",
        DhGroup::Modp6144 => "modp6144",
        DhGroup::Modp8192 => "modp8192",
        DhGroup::Ecp256 => "ecp256",
        DhGroup::Ecp384 => "ecp384",
        DhGroup::Ecp521 => "ecp521",
        DhGroup::Modp1024s160 => "modp1024s160",
        DhGroup::Modp2048s224 => "modp2048s224",
        DhGroup::Modp2048s256 => "modp2048s256",
        DhGroup::Curve25519 => "curve25519",
    }
}

fn join(f: &mut std::fmt::Formatter<'_>, tokens: impl Iterator<Item = &'static str>) -> std::fmt::Result {
    let mut first = true;
    for t in tokens {
        if !first {
            f.write_str("-")?;
        }
        first = false;
        f.write_str(t)?;
    }
    Ok(())
}

/// Writes the canonical strongSwan form (round-trips through `parse`).
impl std::fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        join(
            f,
            self.encr
                .iter()
                .map(|e| encr_token(*e))
                .chain(self.integ.iter().map(|i| integ_token(*i)))
                .chain(self.prf.iter().map(|p| prf_token(*p)))
                .chain(self.dh.iter().map(|g| dh_token(*g))),
        )
    }
}

impl std::fmt::Display for EspProposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        join(
            f,
            self.encr
                .iter()
                .map(|e| encr_token(*e))
                .chain(self.integ.iter().map(|i| integ_token(*i)))
                .chain(self.dh.iter().map(|g| dh_token(*g))),
        )
    }
}

/// Defaults that AWS accepts out of the box (AWS's default tunnel options allow all of these).
pub const DEFAULT_IKE_PROPOSALS: &[&str] = &[
    "aes256gcm16-aes128gcm16-prfsha384-prfsha256-ecp384-ecp256-modp2048",
    "aes256-aes128-sha256-sha384-sha1-modp2048-ecp384-ecp256-modp1024",
];
pub const DEFAULT_ESP_PROPOSALS: &[&str] = &[
    "aes256gcm16-aes128gcm16-ecp384-ecp256-modp2048",
    "aes256-aes128-sha256-sha384-sha1-modp2048-ecp384-ecp256-modp1024",
];
