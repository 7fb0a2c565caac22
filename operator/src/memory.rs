//! What the operator remembers about each IotRelay between reconcile passes: its consecutive failures (for the
//! backoff) and what it last wrote (each child's rendered hash with the live object's version after the write, and
//! the status patch), so a pass that would write the same thing again writes nothing. Entries of IotRelays that no
//! longer exist are forgotten ([`Memory::retain`], run periodically against the IotRelay cache).
//!
//! Nothing here survives a restart: a new operator writes every child and status once, then only changes.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use kube::Resource;
use kube::runtime::reflector::ObjectRef;

use iotrelay_api::IotRelay;

#[derive(Debug, Default)]
struct Entry {
    failures: u32,
    /// Child (`Kind/name`) -> (hash of the rendered object, version of the live object after our write).
    children: HashMap<String, (u64, String)>,
    /// Hash of the last status patch written, and the resourceVersion of the IotRelay the pass that wrote it read.
    status: Option<(u64, Option<String>)>,
    /// [`crate::cache::relay_change`] of the IotRelay as our last status write left it.
    status_left: Option<u64>,
}

/// Per-IotRelay memory, shared by the reconcile passes and the watch caches (a clone shares the same entries).
#[derive(Debug, Default, Clone)]
pub struct Memory {
    entries: Arc<Mutex<HashMap<ObjectRef<IotRelay>, Entry>>>,
}

/// The version of a live child that tells whether someone changed it: the generation where the API server keeps
/// one (a Deployment: status updates do not count), else the resourceVersion.
pub fn live_version<K: Resource>(obj: &K) -> Option<String> {
    match obj.meta().generation {
        Some(g) => Some(format!("g{g}")),
        None => obj.meta().resource_version.clone(),
    }
}

/// The key a child is remembered by: `Kind/name`.
pub fn child_key<K: Resource>(obj: &K) -> String
where
    K::DynamicType: Default,
{
    format!("{}/{}", K::kind(&K::DynamicType::default()), obj.meta().name.as_deref().unwrap_or_default())
}

/// Hash of `value`'s JSON form (stable within one process, which is all the memory needs).
pub fn hash_json(value: &serde_json::Value) -> u64 {
    let mut h = DefaultHasher::new();
    value.to_string().hash(&mut h);
    h.finish()
}

impl Memory {
    fn with<T>(&self, r: &ObjectRef<IotRelay>, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut map = self.entries.lock().ok()?;
        Some(f(map.entry(r.clone()).or_default()))
    }

    /// Counts one more consecutive failure; returns the count.
    pub fn fail(&self, r: &ObjectRef<IotRelay>) -> u32 {
        self.with(r, |e| {
            e.failures = e.failures.saturating_add(1);
            e.failures
        })
        .unwrap_or(1)
    }

    /// A pass succeeded: the failure count starts again.
    pub fn succeeded(&self, r: &ObjectRef<IotRelay>) {
        self.with(r, |e| e.failures = 0);
    }

    /// True when `child` was last written with `hash` and the live object is still the version that write left.
    pub fn child_unchanged(&self, r: &ObjectRef<IotRelay>, child: &str, hash: u64, live_version: Option<&str>) -> bool {
        let Some(live) = live_version else { return false };
        self.with(r, |e| e.children.get(child).is_some_and(|(h, v)| *h == hash && v == live)).unwrap_or(false)
    }

    /// True when the live `child` is the version our last write of it left (its watch event then tells the
    /// operator nothing it does not know). Looks only: an unknown IotRelay gets no entry.
    pub fn wrote(&self, r: &ObjectRef<IotRelay>, child: &str, live_version: Option<&str>) -> bool {
        let Some(live) = live_version else { return false };
        let Ok(map) = self.entries.lock() else { return false };
        map.get(r).and_then(|e| e.children.get(child)).is_some_and(|(_, v)| v == live)
    }

    /// Records a write of `child`.
    pub fn child_written(&self, r: &ObjectRef<IotRelay>, child: &str, hash: u64, version: Option<String>) {
        self.with(r, |e| match version {
            Some(v) => {
                e.children.insert(child.to_string(), (hash, v));
            }
            None => {
                e.children.remove(child);
            }
        });
    }

    /// True when the last status patch written was `hash`, by a pass that read the IotRelay at `version`, the
    /// version the cache still holds: the API server has that write and the cache has not caught up with it yet
    /// (its watch event is on the way). Any later change has another version. Looks only.
    pub fn status_pending(&self, r: &ObjectRef<IotRelay>, hash: u64, version: Option<&str>) -> bool {
        let Ok(map) = self.entries.lock() else { return false };
        map.get(r).and_then(|e| e.status.as_ref()).is_some_and(|(h, v)| *h == hash && v.as_deref() == version)
    }

    /// Records a status write `hash` by a pass that read the IotRelay at `version`.
    pub fn status_written(&self, r: &ObjectRef<IotRelay>, hash: u64, version: Option<String>) {
        self.with(r, |e| e.status = Some((hash, version)));
    }

    /// Records what the IotRelay looked like after our status write (its [`crate::cache::relay_change`] key).
    pub fn status_left(&self, r: &ObjectRef<IotRelay>, key: u64) {
        self.with(r, |e| e.status_left = Some(key));
    }

    /// True when the IotRelay is as our last status write left it (its watch event is that write). Looks only.
    pub fn left_by_own_status(&self, r: &ObjectRef<IotRelay>, key: u64) -> bool {
        let Ok(map) = self.entries.lock() else { return false };
        map.get(r).is_some_and(|e| e.status_left == Some(key))
    }

    /// Forgets every IotRelay for which `exists` is false.
    pub fn retain(&self, exists: impl Fn(&ObjectRef<IotRelay>) -> bool) {
        if let Ok(mut map) = self.entries.lock() {
            map.retain(|k, _| exists(k));
        }
    }

    /// How many IotRelays are remembered.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_relays_are_forgotten() {
        let m = Memory::default();
        let a = ObjectRef::<IotRelay>::new("a").within("iot");
        let b = ObjectRef::<IotRelay>::new("b").within("iot");
        assert_eq!((m.fail(&a), m.fail(&a), m.fail(&b)), (1, 2, 1));
        m.child_written(&b, "Deployment/iotrelay-b", 7, Some("3".into()));
        // `a` was deleted: only `b` is still in the cache.
        m.retain(|r| r.name == "b");
        assert_eq!(m.len(), 1);
        assert_eq!(m.fail(&a), 1, "a's failures were forgotten");
        assert!(m.child_unchanged(&b, "Deployment/iotrelay-b", 7, Some("3")));
    }

    #[test]
    fn a_child_is_unchanged_only_at_the_version_we_wrote() {
        let m = Memory::default();
        let r = ObjectRef::<IotRelay>::new("a").within("iot");
        assert!(!m.child_unchanged(&r, "Role/x", 1, Some("5")), "never written");
        m.child_written(&r, "Role/x", 1, Some("5".into()));
        assert!(m.child_unchanged(&r, "Role/x", 1, Some("5")));
        assert!(!m.child_unchanged(&r, "Role/x", 2, Some("5")), "rendered differently");
        assert!(!m.child_unchanged(&r, "Role/x", 1, Some("6")), "someone else changed it");
        assert!(!m.child_unchanged(&r, "Role/x", 1, None), "deleted");
        assert!(m.wrote(&r, "Role/x", Some("5")) && !m.wrote(&r, "Role/x", Some("6")));
        let other = ObjectRef::<IotRelay>::new("b").within("iot");
        assert!(!m.wrote(&other, "Role/x", Some("5")));
        assert_eq!(m.len(), 1, "a lookup creates no entry");
    }
}
