//! Status publishing: the owner task's view of the [`Datapath`] turned into the `IotRelay` status (built by
//! `status`) and the admin server's [`Published`] snapshot, on every state change and once a second for counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use iotrelay_api::IotRelayStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::admin::{Published, Shared};
use crate::datapath::Datapath;
use crate::ingress::Ingress;
use crate::sockets::Sockets;
use crate::status::{Owner, Place, WallClock, build_status};

/// How often counters are republished when nothing else changed.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// What the owner task publishes, and what it remembers between publications.
pub struct Publisher {
    pub place: Place,
    pub owner: Owner,
    /// The IotRelay generation applied (the conditions' `observedGeneration`).
    pub generation: Option<i64>,
    pub wall: WallClock,
    conditions: Vec<Condition>,
    published_gen: u64,
    last_publish: Instant,
    ingress: Arc<Ingress>,
    /// Notices (for Events) the in-cluster writer had no room for.
    pub notices_dropped: u64,
}

impl Publisher {
    pub fn new(place: Place, owner: Owner, generation: Option<i64>, wall: WallClock, ingress: Arc<Ingress>) -> Self {
        Publisher {
            place,
            owner,
            generation,
            wall,
            conditions: Vec::new(),
            published_gen: 0,
            last_publish: Instant::now(),
            ingress,
            notices_dropped: 0,
        }
    }

    /// When counters are due to be republished.
    pub fn next_tick(&self) -> Instant {
        self.last_publish + PUBLISH_EVERY
    }

    /// Refreshes `/status` on every state change and once a second for counters; pushes to the in-cluster
    /// writer `to_cluster` (which rate-limits counter-only updates itself).
    pub fn publish(
        &mut self,
        dp: &Datapath,
        sockets: &Sockets,
        shared: &Shared,
        to_cluster: Option<&watch::Sender<IotRelayStatus>>,
        force: bool,
    ) {
        let changed = dp.generation != self.published_gen;
        if !force && !changed && self.last_publish.elapsed() < PUBLISH_EVERY {
            return;
        }
        let (tunnels, forwards, drops) = dp.snapshot();
        let status = build_status(
            self.owner,
            self.generation,
            &self.place,
            &tunnels,
            &forwards,
            drops.clone(),
            dp.gateway_on().then(|| dp.gateway_counters()).as_ref(),
            &self.wall,
            Time(Timestamp::now()),
            &self.conditions,
        );
        self.conditions = status.conditions.clone();
        self.published_gen = dp.generation;
        self.last_publish = Instant::now();
        if let Some(tx) = to_cluster {
            tx.send_replace(status.clone());
        }
        if let Ok(mut p) = shared.published.lock() {
            *p = Published {
                status,
                tunnels,
                forwards,
                datapath: drops,
                ingress: self.ingress.stats(),
                not_peer: self.ingress.early.not_peer.load(Ordering::Relaxed),
                notices_dropped: self.notices_dropped,
                reassembly_dropped: dp.reassembly_dropped(),
                gateway: dp.gateway_on().then(|| dp.gateway_counters()),
                socket_drops: sockets.receive_queue_drops(dp),
            };
        }
    }
}
