//! IKE handshake load for `make bench` (bench/run.sh): initiators built from our own engine (`iotrelay-ikev2`'s
//! `Tunnel`, configured as the relay configures it: PSK, forced UDP encapsulation, 0.0.0.0/0 selectors) against a
//! running responder over real UDP. Each initiator has a source address of its own (`--src`, then the following
//! addresses, `--peers` of them, all on a local interface) and keeps one handshake in flight: IKE_SA_INIT +
//! IKE_AUTH up to the first CHILD_SA installed, then DELETE, then the next one, for `--secs`. So `--peers` is the
//! number of handshakes in flight. One thread; the engines' retransmission timers run on the monotonic clock.
//!
//! Prints one line of `key=value`: `handshakes` (completed within the interval), `secs`, `rate` (per second of
//! wall time), `failures` (the engine gave up, the peer refused, or no CHILD_SA within `--timeout-ms`) and
//! `last_failure`, `hs_p50_ms`/`hs_p99_ms` (IKE_SA_INIT sent to CHILD_SA installed), `close_timeouts`, datagrams
//! `sent`/`received`, `send_errors`, and this process's own CPU seconds (`cpu_secs`: the initiators spend about
//! as much on Diffie-Hellman as the responder). Exits 1 when no handshake completed.
//!
//!   iotrelay-ikeload --dst 198.51.100.2 --src 198.51.100.101 --peers 1 --psk-file F --secs 5

mod slot;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use iotrelay_crypto::proposal::{EspProposal, IkeProposal};
use iotrelay_ikev2::{Config, Identity, StartupAction};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use zeroize::Zeroizing;

use slot::{Slot, Stats};

#[derive(Parser)]
#[command(about = "IKE handshakes per second against a responder, over real UDP")]
struct Args {
    /// The responder's address (IKE on its ports 500 and 4500).
    #[arg(long)]
    dst: Ipv4Addr,
    /// The first initiator's source address; the others follow it (must be local addresses).
    #[arg(long)]
    src: Ipv4Addr,
    /// Initiators, one source address and one handshake in flight each.
    #[arg(long, default_value_t = 1)]
    peers: u32,
    /// A file holding the pre-shared key (its first line).
    #[arg(long)]
    psk_file: std::path::PathBuf,
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// IKE proposal (one).
    #[arg(long, default_value = "aes128gcm16-prfsha256-ecp256")]
    ike: String,
    /// ESP proposal (one).
    #[arg(long, default_value = "aes128gcm16-ecp256")]
    esp: String,
    /// A handshake (or a DELETE) not done within this long is given up and a new one started.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
}

/// After the interval, how long handshakes still in flight get to finish and close (not counted).
const GRACE: Duration = Duration::from_secs(3);

fn config(a: &Args, psk: &Zeroizing<Vec<u8>>, me: Ipv4Addr) -> anyhow::Result<Config> {
    let mut c = Config::aws_defaults(psk.clone(), Identity::Ipv4(me));
    c.ike_proposals = vec![IkeProposal::parse(&a.ike).map_err(|e| anyhow::anyhow!("--ike: {e:?}"))?];
    c.esp_proposals = vec![EspProposal::parse(&a.esp).map_err(|e| anyhow::anyhow!("--esp: {e:?}"))?];
    c.startup = StartupAction::Start;
    c.force_encap = true;
    c.initial_contact = true;
    Ok(c)
}

/// This process's user + system CPU time (/proc/self/stat, clock ticks of 1/100 s).
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is index 0, utime 11, stime 12.
    (tick(11) + tick(12)) / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let psk = std::fs::read_to_string(&a.psk_file).with_context(|| format!("{}", a.psk_file.display()))?;
    let psk = Zeroizing::new(psk.lines().next().unwrap_or("").as_bytes().to_vec());
    anyhow::ensure!(!psk.is_empty(), "{}: empty pre-shared key", a.psk_file.display());
    let limit = Duration::from_millis(a.timeout_ms);
    let epoch = Instant::now();
    let mut slots = Vec::new();
    for i in 0..a.peers {
        let me = Ipv4Addr::from(u32::from(a.src).wrapping_add(i));
        slots.push(Slot::new(me, a.dst, config(&a, &psk, me)?, epoch.elapsed())?);
    }
    let (mut st, mut buf) = (Stats::default(), vec![0u8; 65536]);
    let (cpu0, end) = (cpu_secs(), Duration::from_secs_f64(a.secs));
    let mut running = true;
    let mut secs = a.secs;
    let mut readable = Vec::with_capacity(slots.len());
    loop {
        let now = epoch.elapsed();
        for s in &mut slots {
            s.on_time(now, limit, running, &mut st);
            s.pump(now, running, &mut st);
        }
        if running && now >= end {
            running = false;
            secs = now.as_secs_f64();
        }
        if !running && (slots.iter().all(Slot::idle) || now >= end + GRACE) {
            break;
        }
        let mut due = if running { end } else { end + GRACE };
        for s in &mut slots {
            if let Some(t) = s.next_due(limit) {
                due = due.min(t);
            }
        }
        let wait = due.saturating_sub(epoch.elapsed()).min(Duration::from_millis(50));
        let timeout = Timespec { tv_sec: 0, tv_nsec: i64::from(wait.subsec_nanos()) };
        let mut fds: Vec<PollFd> = slots
            .iter()
            .flat_map(|s| [PollFd::new(&s.ike, PollFlags::IN), PollFd::new(&s.natt, PollFlags::IN)])
            .collect();
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        readable.clear();
        readable.extend(fds.chunks(2).map(|p| p.iter().any(|f| !f.revents().is_empty())));
        drop(fds);
        let now = epoch.elapsed();
        for (s, r) in slots.iter_mut().zip(&readable) {
            if *r {
                s.receive(now, &mut buf, &mut st);
                s.pump(now, running, &mut st);
            }
        }
    }
    let cpu = cpu_secs() - cpu0;
    st.times_ms.sort_by(f64::total_cmp);
    println!(
        "handshakes={} secs={secs:.3} rate={:.1} failures={} last_failure={} hs_p50_ms={:.2} hs_p99_ms={:.2} \
         close_timeouts={} sent={} received={} send_errors={} peers={} cpu_secs={cpu:.2}",
        st.completed,
        st.completed as f64 / secs,
        st.failures,
        st.last_failure.as_deref().unwrap_or("none"),
        percentile(&st.times_ms, 0.5),
        percentile(&st.times_ms, 0.99),
        st.close_timeouts,
        st.sent,
        st.received,
        st.send_errors,
        a.peers,
    );
    if st.completed == 0 {
        std::process::exit(1);
    }
    Ok(())
}
