//! The gateway's TUN device and its routes (I/O): created on start with `insideAddress` (a leftover device of the
//! same name, e.g. from a relay that was SIGKILLed while the device was persistent, is removed first), routes
//! added through rtnetlink (the configured ones at start; with BGP, the learned ones as they come and go:
//! [`GatewayDevice::sync_routes`]), and all of it removed on stop. The device is not persistent: if the process dies
//! however it dies, the kernel removes the device and its routes when the last descriptor closes.
//!
//! tun-rs opens `/dev/net/tun` and configures the device (TUNSETIFF, address, MTU, up) without `unsafe` in this
//! crate; rtnetlink speaks netlink for routes, link lookup and deletion (no `ip` commands).
//!
//! Offloads: the device is opened with `IFF_VNET_HDR` and `TUNSETOFFLOAD` (`TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6`, and
//! `TUN_F_USO4|TUN_F_USO6` where the kernel accepts them; tun-rs's `offload`), so one read returns a TCP or UDP
//! super-packet of up to 64 KiB ([`TunReader`] segments it with `crate::tun_gso`) and one write can carry many
//! coalesced TCP segments (`crate::tun_gro`). Where the kernel refuses, or with `IOTRELAY_TUN_OFFLOAD=off`, the
//! device is opened plain: one packet per read and per write. The mode is logged and exported
//! (`iotrelay_gateway_tun_offload`).

use std::io;
use std::net::Ipv4Addr;

use anyhow::Context as _;
use futures::TryStreamExt as _;
use iotrelay_api::Ipv4Cidr;
use iotrelay_api::validate::{GATEWAY_MAX_MTU, ValidatedGateway};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

pub use crate::gateway::TunIo;
use crate::tun_gso::{VNET_HDR_LEN, VnetHdr, segment};
use iotrelay_esp::ipv4::IPV4_MAX_LEN;

/// Most reads from the device in one pass of the owner loop (each one packet, or a super-packet with offloads).
pub const TUN_BATCH: usize = 64;
/// Read buffer: a `virtio_net_hdr` and the largest (super-)packet the device can hand us.
pub const TUN_BUF: usize = VNET_HDR_LEN + IPV4_MAX_LEN + 1;
/// `IOTRELAY_TUN_OFFLOAD=off` (or `0`, `false`) opens the device without offloads.
pub const TUN_OFFLOAD_ENV: &str = "IOTRELAY_TUN_OFFLOAD";

/// Whether the environment turns the offloads off.
fn offload_wanted() -> bool {
    !std::env::var(TUN_OFFLOAD_ENV)
        .is_ok_and(|v| ["off", "0", "false", "no"].contains(&v.to_ascii_lowercase().as_str()))
}

/// The open device, its routes, and the netlink handle that removes them.
pub struct GatewayDevice {
    dev: tun_rs::AsyncDevice,
    vnet: bool,
    uso: bool,
    name: String,
    index: u32,
    mtu: u16,
    routes: Vec<Ipv4Cidr>,
    /// Learned over BGP, added at run time (never one of `routes`).
    learned: Vec<Ipv4Cidr>,
    inside: Ipv4Addr,
    netlink: Handle,
}

/// A route through device `index` with `inside` as the preferred source.
fn route_msg(r: &Ipv4Cidr, index: u32, inside: Ipv4Addr) -> rtnetlink::packet_route::route::RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.addr(), r.prefix_len())
        .output_interface(index)
        .pref_source(inside)
        .build()
}

/// Finds a link by name: `Some((index, is_tun))`.
async fn find_link(h: &Handle, name: &str) -> anyhow::Result<Option<(u32, bool)>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => {
            let tun = l.attributes.iter().any(|a| match a {
                LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Tun))),
                _ => false,
            });
            Ok(Some((l.header.index, tun)))
        }
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
        Err(e) => Err(e).with_context(|| format!("looking up interface {name}")),
    }
}

/// The read side: one preallocated buffer for a frame and one for the segment being built.
pub struct TunReader {
    frame: Box<[u8]>,
    scratch: Box<[u8]>,
}

impl Default for TunReader {
    fn default() -> Self {
        TunReader { frame: vec![0u8; TUN_BUF].into_boxed_slice(), scratch: vec![0u8; IPV4_MAX_LEN].into_boxed_slice() }
    }
}

impl TunReader {
    /// Reads up to [`TUN_BATCH`] frames without blocking and hands every IPv4 packet they hold to `packet` (a
    /// super-packet's segments one by one, each in the same buffer). Returns the frames read and how many of them
    /// were refused (see [`crate::tun_gso::OffloadError`]); counts into `io`.
    pub fn read_batch(&mut self, dev: &GatewayDevice, io: &mut TunIo, packet: &mut dyn FnMut(&mut [u8])) -> u64 {
        let mut refused = 0;
        for _ in 0..TUN_BATCH {
            let Ok(n) = dev.dev.try_recv(&mut self.frame) else { break };
            io.reads += 1;
            if !dev.vnet {
                io.packets_read += 1;
                packet(&mut self.frame[..n]);
                continue;
            }
            let Some((hdr, at)) = VnetHdr::parse(&self.frame[..n]) else {
                refused += 1;
                continue;
            };
            match segment(&hdr, &mut self.frame[at..n], &mut self.scratch, packet) {
                Ok(k) => io.packets_read += k as u64,
                Err(e) => {
                    tracing::debug!(error = ?e, ?hdr, "TUN frame refused");
                    refused += 1;
                }
            }
        }
        refused
    }
}

impl GatewayDevice {
    /// Creates the device `cfg.interface` with `inside`/32, MTU `cfg.mtu` (default 1446, lowered to the suite's
    /// once a CHILD_SA is installed: [`GatewayDevice::set_mtu`]) and a route for each of `cfg.routes` with
    /// `inside` as preferred source. Needs `CAP_NET_ADMIN` and `/dev/net/tun`.
    pub async fn open(cfg: &ValidatedGateway, inside: Ipv4Addr) -> anyhow::Result<GatewayDevice> {
        let (conn, netlink, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(conn);
        let name = cfg.interface.clone();
        match find_link(&netlink, &name).await? {
            Some((index, true)) => {
                tracing::warn!(interface = %name, "removing a leftover TUN device of that name");
                netlink.link().del(index).execute().await.with_context(|| format!("removing leftover {name}"))?;
            }
            Some((_, false)) => {
                anyhow::bail!(
                    "spec.gateway.interface: interface {name} exists and is not a TUN device; pick another name"
                )
            }
            None => {}
        }
        let mtu = cfg.mtu.unwrap_or(GATEWAY_MAX_MTU);
        let build = |offload: bool| {
            tun_rs::DeviceBuilder::new()
                .name(&name)
                .mtu(mtu)
                .ipv4(inside, 32, None)
                .packet_information(false)
                .offload(offload)
                .build_async()
        };
        let dev = match offload_wanted().then(|| build(true)) {
            Some(Ok(dev)) => Ok(dev),
            Some(Err(e)) => {
                // The failed device was never persistent: closing it removed it.
                tracing::warn!(interface = %name, error = %e, "TUN offloads refused; one packet per read and write");
                build(false)
            }
            None => build(false),
        }
        .with_context(|| format!("creating TUN device {name} (needs CAP_NET_ADMIN and /dev/net/tun)"))?;
        let (vnet, uso) = (dev.tcp_gso(), dev.udp_gso());
        let index = dev.if_index().with_context(|| format!("index of {name}"))?;
        let mut d = GatewayDevice {
            dev,
            vnet,
            uso,
            name,
            index,
            mtu,
            routes: Vec::new(),
            learned: Vec::new(),
            inside,
            netlink,
        };
        for r in &cfg.routes {
            if let Err(e) = d.netlink.route().add(route_msg(r, index, inside)).execute().await {
                let interface = d.name.clone();
                d.close().await;
                return Err(e).with_context(|| format!("adding route {r} via {interface}"));
            }
            d.routes.push(*r);
        }
        tracing::info!(interface = %d.name, %inside, mtu, offload = d.vnet, uso = d.uso, routes = ?d.routes.iter().map(|r| r.to_string()).collect::<Vec<_>>(), "gateway device up");
        Ok(d)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until a packet may be read (cancel safe).
    pub async fn readable(&self) -> io::Result<()> {
        self.dev.readable().await
    }

    /// Whether reads and writes carry a `virtio_net_hdr` (offloads on).
    pub fn vnet(&self) -> bool {
        self.vnet
    }

    /// The offload mode, for [`TunIo`].
    pub fn io_mode(&self) -> TunIo {
        TunIo { offload: self.vnet, uso: self.uso, ..TunIo::default() }
    }

    /// Writes one frame (with its `virtio_net_hdr` when offloads are on) without blocking; false when the device
    /// did not take it.
    pub fn try_send(&self, frame: &[u8]) -> bool {
        self.dev.try_send(frame).is_ok()
    }

    /// Sets the device MTU (the negotiated suite's inner MTU when `gateway.mtu` is unset).
    pub async fn set_mtu(&mut self, mtu: u16) {
        if mtu == self.mtu {
            return;
        }
        let msg = LinkUnspec::new_with_index(self.index).mtu(u32::from(mtu)).build();
        match self.netlink.link().set(msg).execute().await {
            Ok(()) => {
                tracing::info!(interface = %self.name, mtu, "gateway MTU set from the negotiated suite");
                self.mtu = mtu;
            }
            Err(e) => tracing::warn!(interface = %self.name, mtu, error = %e, "cannot set the gateway MTU"),
        }
    }

    /// Makes the learned routes through the device `wanted` (minus the configured ones, which stay): adds what is
    /// new, removes what is gone. Returns how many changes failed (they are retried on the next call).
    pub async fn sync_routes(&mut self, wanted: &[Ipv4Cidr]) -> u64 {
        let mut failed = 0;
        let gone: Vec<Ipv4Cidr> = self.learned.iter().filter(|r| !wanted.contains(r)).copied().collect();
        for r in gone {
            match self.netlink.route().del(route_msg(&r, self.index, self.inside)).execute().await {
                Ok(()) => tracing::info!(route = %r, interface = %self.name, "BGP route removed"),
                // ESRCH: already gone.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -3 => {}
                Err(e) => {
                    tracing::warn!(route = %r, error = %e, "cannot remove a BGP route");
                    failed += 1;
                    continue;
                }
            }
            self.learned.retain(|l| *l != r);
        }
        let new: Vec<Ipv4Cidr> =
            wanted.iter().filter(|r| !self.routes.contains(r) && !self.learned.contains(r)).copied().collect();
        for r in &new {
            match self.netlink.route().add(route_msg(r, self.index, self.inside)).execute().await {
                Ok(()) => {
                    tracing::info!(route = %r, interface = %self.name, "BGP route added");
                    self.learned.push(*r);
                }
                Err(e) => {
                    tracing::warn!(route = %r, error = %e, "cannot add a BGP route");
                    failed += 1;
                }
            }
        }
        failed
    }

    /// Removes the routes and the device (closing it removes a non-persistent device; a device that is still
    /// there afterwards is deleted).
    pub async fn close(self) {
        let GatewayDevice { dev, name, index, routes, learned, inside, netlink, .. } = self;
        for r in routes.iter().chain(&learned) {
            if let Err(e) = netlink.route().del(route_msg(r, index, inside)).execute().await {
                tracing::debug!(route = %r, error = %e, "route already gone");
            }
        }
        drop(dev);
        if let Ok(Some((i, true))) = find_link(&netlink, &name).await
            && let Err(e) = netlink.link().del(i).execute().await
        {
            tracing::warn!(interface = %name, error = %e, "cannot remove the gateway device");
            return;
        }
        tracing::info!(interface = %name, "gateway device and routes removed");
    }
}
