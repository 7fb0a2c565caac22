//! Proposal strings in strongSwan syntax, as AWS's downloadable configurations write them:
//! `aes128-sha1-modp1024`, `aes256-sha256-modp2048`, `aes256gcm16-prfsha384-ecp384`.
//!
//! Tokens (separated by `-`): encryption `aes128`, `aes256`, `aes128gcm16`, `aes256gcm16` (also `aes128gcm128`,
//! `aes256gcm128`); integrity `sha1`, `sha256`, `sha384`, `sha512` (for IKE also the PRF when no `prf*` token is
//! given); PRF `prfsha1`, `prfsha256`, `prfsha384`, `prfsha512`; DH `modp1024`, `modp1536`, `modp2048`,
//! `modp3072`, `modp4096`, `modp6144`, `modp8192`, `modp1024s160`, `modp2048s224`, `modp2048s256`, `ecp256`,
//! `ecp384`, `ecp521`, `curve25519` (alias `x25519`); ESP also `noesn`.

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

impl IkeProposal {
    /// Parses strongSwan syntax. Rules: at least one encryption algorithm; at least one PRF (explicit or implied by
    /// an integrity token); at least one DH group; integrity required with CBC and not allowed with only GCM.
    pub fn parse(s: &str) -> Result<Self, ProposalError> {
        let _ = s;
        todo!()
    }
}

impl EspProposal {
    /// Parses strongSwan syntax. Integrity required with CBC, not allowed with only GCM; DH optional (PFS).
    pub fn parse(s: &str) -> Result<Self, ProposalError> {
        let _ = s;
        todo!()
    }
}

/// Writes the canonical strongSwan form (round-trips through `parse`).
impl std::fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let _ = f;
        todo!()
    }
}

impl std::fmt::Display for EspProposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let _ = f;
        todo!()
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
