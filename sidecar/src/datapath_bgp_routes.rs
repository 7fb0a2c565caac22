//! Gateway mode with dynamic routing in the [`Datapath`]: the prefixes AWS announces on Established sessions
//! become the gateway's remote subnets (what the TUN device may send into the tunnel and receive from it) and the
//! routes the relay keeps in the kernel through the device (`crate::tun` adds and removes them; this part only
//! says which). Bounded ([`MAX_GATEWAY_BGP_ROUTES`]); a learned prefix that would route a tunnel's own ESP into
//! the device (it covers a tunnel peer's address, e.g. `0.0.0.0/0`) is refused. Both are counted. The near side:
//! what gateway mode may carry on this side ([`Datapath::gateway_local`]).

use std::net::Ipv4Addr;

use iotrelay_bgp::{Ipv4Cidr, State};

use super::Datapath;

/// Most learned prefixes routed through the TUN device (two sessions may each hold 1000).
pub const MAX_GATEWAY_BGP_ROUTES: usize = 1000;

/// Which learned prefixes become routes: deduplicated and in address order, without those covering one of `avoid`
/// (they would route the tunnels themselves into the device), at most `bound`. Returns them and how many were
/// refused (covering an address to avoid, or beyond the bound).
pub fn gateway_routes(
    learned: impl IntoIterator<Item = Ipv4Cidr>,
    avoid: &[Ipv4Addr],
    bound: usize,
) -> (Vec<Ipv4Cidr>, u64) {
    let mut all: Vec<Ipv4Cidr> = learned.into_iter().collect();
    all.sort_unstable();
    all.dedup();
    let mut refused = 0u64;
    let mut routes = Vec::with_capacity(all.len().min(bound));
    for p in all {
        if avoid.iter().any(|a| p.contains(*a)) || routes.len() >= bound {
            refused += 1;
        } else {
            routes.push(p);
        }
    }
    (routes, refused)
}

impl Datapath {
    /// Recomputes the gateway's BGP routes (after a session event); bumps their version when they changed.
    pub(super) fn bgp_routes_update(&mut self) {
        if self.gateway.is_none() {
            return;
        }
        let avoid: Vec<Ipv4Addr> = self
            .tunnels
            .iter()
            .flat_map(|t| {
                let esp = match t.esp_remote {
                    std::net::SocketAddr::V4(a) => Some(*a.ip()),
                    std::net::SocketAddr::V6(_) => None,
                };
                std::iter::once(t.peer).chain(esp)
            })
            .collect();
        let Some(b) = self.bgp.as_mut() else { return };
        let learned = b
            .tunnels
            .iter()
            .flatten()
            .filter(|t| t.running && t.session.state() == State::Established)
            .flat_map(|t| t.session.speaker().routes().iter().map(|r| r.prefix));
        let (routes, refused) = gateway_routes(learned, &avoid, MAX_GATEWAY_BGP_ROUTES);
        self.gw.bgp_routes = routes.len() as u64;
        self.gw.bgp_routes_refused = refused;
        if routes != b.gateway_routes {
            b.gateway_routes = routes;
            b.gateway_routes_version += 1;
            self.generation += 1;
        }
    }

    /// The prefixes to route through the TUN device and their version (it changes whenever they do); `None`
    /// without BGP or gateway mode.
    pub fn gateway_bgp_routes(&self) -> Option<(u64, &[Ipv4Cidr])> {
        self.gateway.as_ref()?;
        let b = self.bgp.as_ref()?;
        Some((b.gateway_routes_version, &b.gateway_routes))
    }

    /// Route changes the device could not make (netlink errors), counted.
    pub fn count_gateway_route_errors(&mut self, n: u64) {
        self.gw.route_errors += n;
    }

    /// Whether gateway mode may carry traffic to or from `ip` on the far side: inside `remoteSubnets`, or with BGP
    /// inside a prefix learned on an Established session (the routes above).
    pub(super) fn gateway_remote(&self, ip: Ipv4Addr) -> bool {
        match (self.bgp.as_ref(), self.gateway.as_ref()) {
            (Some(b), _) => b.gateway_routes.iter().any(|p| p.contains(ip)),
            (None, Some(gw)) => gw.remote_subnets.iter().any(|c| c.contains(ip)),
            (None, None) => false,
        }
    }

    /// Whether gateway mode may carry traffic from or to `ip` on this side (`GatewayConfig::local`: with BGP the
    /// prefixes announced to AWS, which routes answers to nothing else; `None`: anything).
    pub(super) fn gateway_local(&self, ip: Ipv4Addr) -> bool {
        let Some(gw) = self.gateway.as_ref() else { return false };
        gw.local.as_ref().is_none_or(|l| l.iter().any(|c| c.contains(ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn dedups_refuses_covering_prefixes_and_bounds() {
        let peer = Ipv4Addr::new(198, 51, 100, 2);
        let learned = [p("100.64.0.0/16"), p("0.0.0.0/0"), p("100.64.0.0/16"), p("198.51.100.0/24"), p("10.0.0.0/8")];
        let (routes, refused) = gateway_routes(learned, &[peer], 10);
        assert_eq!(routes, vec![p("10.0.0.0/8"), p("100.64.0.0/16")]);
        assert_eq!(refused, 2);
        let many = (0..=255u8).map(|i| p(&format!("100.{i}.0.0/16")));
        let (routes, refused) = gateway_routes(many, &[peer], 200);
        assert_eq!((routes.len(), refused), (200, 56));
    }
}
