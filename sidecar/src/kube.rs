//! In-cluster mode (issue 4 item 3).

use std::net::SocketAddr;

pub async fn run_kube(
    name: String,
    namespace: String,
    admin_addr: SocketAddr,
    _allow_short: bool,
) -> anyhow::Result<()> {
    anyhow::bail!("kube mode is not implemented yet (IotRelay {namespace}/{name}, admin {admin_addr})")
}
