//! Standalone mode input: one multi-document YAML file holding an `IotRelay` and the `Secret`(s) it references,
//! exactly what `kubectl apply -f` would take.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use crate::spec::IotRelay;

/// Secret values by (Secret name, key).
pub type SecretValues = BTreeMap<(String, String), SecretBytes>;

/// A secret value (a PSK): wiped on drop, and `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes (taking ownership, so no unwiped copy is left behind).
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }
    /// The value.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for SecretBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// One Secret's keys and values.
type KeyValues = BTreeMap<String, SecretBytes>;

/// Why the file could not be loaded. Never contains secret values.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("document {doc}: {message}")]
    Yaml { doc: usize, message: String },
    #[error("no IotRelay document found")]
    NoIotRelay,
    #[error("more than one IotRelay document (documents {first} and {second})")]
    MultipleIotRelays { first: usize, second: usize },
    #[error("document {doc}: IotRelay: {message}")]
    InvalidIotRelay { doc: usize, message: String },
    #[error("document {doc}: Secret {name:?}: {message}")]
    InvalidSecret { doc: usize, name: String, message: String },
    #[error("document {doc}: unsupported kind {kind:?} (expected IotRelay or Secret)")]
    UnsupportedKind { doc: usize, kind: String },
    #[error("Secret {name:?} referenced by spec.tunnels[{tunnel}].preSharedKeySecretRef not found")]
    MissingSecret { name: String, tunnel: usize },
    #[error("Secret {name:?} has no key {key:?} (referenced by spec.tunnels[{tunnel}].preSharedKeySecretRef)")]
    MissingKey { name: String, key: String, tunnel: usize },
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct TypeMeta {
    #[serde(default, rename = "apiVersion")]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

/// Secret documents are read into this and nothing else, so values never pass through a type that could print
/// them.
#[derive(Deserialize)]
struct SecretDoc {
    metadata: Meta,
    #[serde(default)]
    data: BTreeMap<String, Zeroizing<String>>,
    #[serde(default, rename = "stringData")]
    string_data: BTreeMap<String, Zeroizing<String>>,
}

/// Loads the IotRelay and the values of the Secret keys its tunnels reference.
///
/// Only referenced keys are returned. `stringData` wins over `data` for the same key, as in Kubernetes.
pub fn load_yaml(text: &str) -> Result<(IotRelay, SecretValues), LoadError> {
    let mut relay: Option<(usize, IotRelay)> = None;
    // Keyed by (namespace, name); a Secret without a namespace matches any IotRelay namespace.
    let mut secrets: BTreeMap<(Option<String>, String), KeyValues> = BTreeMap::new();
    let mut input = std::io::Cursor::new(text.as_bytes());
    for (idx, value) in serde_saphyr::read_with_options::<_, serde_json::Value>(&mut input, yaml_options()).enumerate()
    {
        let doc = idx + 1;
        // The parser's messages name a position and what was expected, never the input text (no snippet), and
        // `scrub` keeps only the part before any quoted text; Secret documents are parsed only into `SecretDoc`
        // whose errors are replaced by a fixed message.
        let mut value = value.map_err(|e| LoadError::Yaml { doc, message: scrub(&e) })?;
        // Read from a borrow: a clone of the document would be another copy of its secret values.
        let tm = TypeMeta::deserialize(&value)
            .map_err(|_| LoadError::Yaml { doc, message: "apiVersion and kind must be strings".into() })?;
        match tm.kind.as_deref() {
            Some("IotRelay") => {
                if let Some(v) = tm.api_version.as_deref()
                    && v != format!("{}/{}", crate::GROUP, crate::VERSION)
                {
                    return Err(LoadError::InvalidIotRelay {
                        doc,
                        message: format!("apiVersion must be iotrelay.dev/v1alpha1, got {v:?}"),
                    });
                }
                let r: IotRelay = serde_json::from_value(value)
                    .map_err(|e| LoadError::InvalidIotRelay { doc, message: e.to_string() })?;
                if let Some((first, _)) = &relay {
                    return Err(LoadError::MultipleIotRelays { first: *first, second: doc });
                }
                relay = Some((doc, r));
            }
            Some("Secret") => {
                let parsed = SecretDoc::deserialize(&value);
                wipe(&mut value);
                let s = parsed.map_err(|_| LoadError::InvalidSecret {
                    doc,
                    name: String::new(),
                    message: "not a valid Secret (expected metadata.name and string maps data / stringData)".into(),
                })?;
                let name = s.metadata.name.clone().unwrap_or_default();
                if name.is_empty() {
                    return Err(LoadError::InvalidSecret { doc, name, message: "metadata.name is required".into() });
                }
                let entry = secrets.entry((s.metadata.namespace.clone(), name.clone())).or_default();
                for (k, v) in &s.data {
                    let compact: Zeroizing<String> = Zeroizing::new(v.chars().filter(|c| !c.is_whitespace()).collect());
                    let bytes = base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()).map_err(|_| {
                        LoadError::InvalidSecret {
                            doc,
                            name: name.clone(),
                            message: format!("data.{k} is not valid base64"),
                        }
                    })?;
                    entry.insert(k.clone(), SecretBytes::new(bytes));
                }
                for (k, v) in &s.string_data {
                    entry.insert(k.clone(), SecretBytes::new(v.as_bytes().to_vec()));
                }
            }
            Some(other) => {
                return Err(LoadError::UnsupportedKind { doc, kind: other.to_string() });
            }
            None => {
                return Err(LoadError::UnsupportedKind { doc, kind: String::new() });
            }
        }
    }
    let (_, relay) = relay.ok_or(LoadError::NoIotRelay)?;
    let mut out = SecretValues::new();
    for (i, t) in relay.spec.tunnels.iter().enumerate() {
        let r = &t.pre_shared_key_secret_ref;
        let ns = relay.metadata.namespace.clone();
        let s = secrets
            .iter()
            .find(|((sns, name), _)| *name == r.name && (sns.is_none() || ns.is_none() || *sns == ns))
            .map(|(_, v)| v)
            .ok_or_else(|| LoadError::MissingSecret { name: r.name.clone(), tunnel: i })?;
        let v = s.get(&r.key).ok_or_else(|| LoadError::MissingKey {
            name: r.name.clone(),
            key: r.key.clone(),
            tunnel: i,
        })?;
        out.insert((r.name.clone(), r.key.clone()), v.clone());
    }
    Ok((relay, out))
}

/// How standalone files are parsed: YAML 1.2 scalars as Kubernetes' own YAML 1.2 readers and the previous parser
/// took them (`yes`, `0755`, `1_000` stay strings in untyped positions), duplicate keys refused, and no source
/// snippet in errors (it would quote the lines around the error: a pre-shared key).
fn yaml_options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.with_snippet = false;
    o.crop_radius = 0;
    o.strict_booleans = true;
    o.leading_zero_numbers_as_strings = true;
    o.underscored_numbers_as_strings = true;
    o
}

/// A YAML error as the loader reports it: the parser's description up to any quoted text (a duplicate key or an
/// unexpected character can be quoted there), and the position.
fn scrub(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let end = [" at line ", "'", "\"", "`", ":"].iter().filter_map(|m| text.find(m)).min().unwrap_or(text.len());
    let head = text[..end].trim();
    let head = if head.is_empty() { "invalid YAML" } else { head };
    match e.location() {
        Some(l) => format!("{head} at line {}, column {}", l.line(), l.column()),
        None => head.to_string(),
    }
}

/// Overwrites every string of a parsed Secret document (the values and the copies of them it holds).
fn wipe(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(a) => a.iter_mut().for_each(wipe),
        serde_json::Value::Object(o) => o.values_mut().for_each(wipe),
        _ => {}
    }
}
