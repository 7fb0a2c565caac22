//! `iotrelay-udpload`: the traffic tools of `make bench` (`bench/run.sh`), one binary, four commands.
//!
//! - `send`: a load generator that outruns the relay: `sendmmsg` batches from one blocking socket (the kernel's
//!   own send-buffer backpressure, never a silent drop in the sender), flat out (`--rate 0`) or paced.
//! - `recv`: a receiver that counts exactly: every datagram carries a magic, a run id and a sequence number, the
//!   receiver counts each sequence number once (duplicates and foreign datagrams apart), so a late datagram of an
//!   earlier probe is never counted. It stops once nothing at all has arrived for `--idle-ms`.
//! - `echo`: answers every datagram to its sender (the device in the latency probe).
//! - `ping`: a paced stream through the echo that measures each round trip (p50, p99, max).
//!
//! Output is one line of `key=value` pairs on stdout, for the shell that runs the bench.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use quinn_udp::{RecvMeta, UdpSocketState};
use rustix::io::Errno;
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, sendmmsg, sockopt};

const MAGIC: &[u8; 4] = b"IRB1";
/// magic, run id (u32), sequence number (u64), send time in ns since the sender's start (u64)
const HEADER: usize = 24;
/// Sequence numbers above this are counted as foreign (bounds the receiver's bitmap to 8 MiB).
const MAX_SEQ: u64 = 1 << 26;

#[derive(Parser)]
#[command(name = "iotrelay-udpload", about = "UDP load generator and exact receiver for make bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send datagrams of --size octets to --dst for --secs seconds, batched with sendmmsg
    Send {
        #[arg(long)]
        dst: SocketAddr,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// datagrams per second; 0: as fast as the kernel takes them
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        #[arg(long, default_value_t = 1)]
        run: u32,
        /// datagrams per sendmmsg call (at most; paced sends use smaller batches at low rates)
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// sender threads, each with its own socket (source port) and a share of --rate
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// sockets (source ports) per thread, used in turn one batch each: as many relay sessions
        #[arg(long, default_value_t = 1)]
        sockets: usize,
        /// spread the sockets over this many destination ports from --dst's port on (several forwards)
        #[arg(long, default_value_t = 1)]
        dst_ports: u16,
    },
    /// Count the datagrams of one run arriving at --bind until the stream is idle
    Recv {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long, default_value_t = 1)]
        run: u32,
        /// stop after this long without any datagram (once the first one of the run arrived)
        #[arg(long, default_value_t = 700)]
        idle_ms: u64,
        /// stop after this long in any case
        #[arg(long, default_value_t = 30.0)]
        wait_secs: f64,
        /// SO_RCVBUF (forced; needs CAP_NET_ADMIN)
        #[arg(long, default_value_t = 8 << 20)]
        rcvbuf: usize,
        /// written (empty) once the socket is bound, so the sender can start
        #[arg(long)]
        ready: Option<std::path::PathBuf>,
    },
    /// Answer every datagram to its sender, forever
    Echo {
        #[arg(long)]
        bind: SocketAddr,
    },
    /// Send --rate datagrams/s to an echo for --secs seconds and report round-trip percentiles
    Ping {
        #[arg(long)]
        dst: SocketAddr,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        #[arg(long, default_value_t = 1)]
        run: u32,
        /// stop at the first answer (bring-up: how long until traffic flows)
        #[arg(long)]
        until_first: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Send { dst, size, rate, secs, run, batch, threads, sockets, dst_ports } => {
            let spread = Spread { sockets: sockets.clamp(1, 4096), dst_ports: dst_ports.max(1) };
            send(dst, size, rate, secs, run, batch, threads, spread)
        }
        Cmd::Recv { bind, run, idle_ms, wait_secs, rcvbuf, ready } => {
            recv(bind, run, Duration::from_millis(idle_ms), Duration::from_secs_f64(wait_secs), rcvbuf, ready)
        }
        Cmd::Echo { bind } => echo(bind),
        Cmd::Ping { dst, size, rate, secs, run, until_first } => ping(dst, size, rate, secs, run, until_first),
    }
}

fn stamp(buf: &mut [u8], run: u32, seq: u64, t_ns: u64) {
    buf[..4].copy_from_slice(MAGIC);
    buf[4..8].copy_from_slice(&run.to_le_bytes());
    buf[8..16].copy_from_slice(&seq.to_le_bytes());
    buf[16..24].copy_from_slice(&t_ns.to_le_bytes());
}

/// (sequence number, send time) of a datagram of `run`, or None for anything else.
fn parse(buf: &[u8], run: u32) -> Option<(u64, u64)> {
    if buf.len() < HEADER || &buf[..4] != MAGIC || buf[4..8] != run.to_le_bytes() {
        return None;
    }
    let seq = u64::from_le_bytes(buf[8..16].try_into().ok()?);
    let t = u64::from_le_bytes(buf[16..24].try_into().ok()?);
    Some((seq, t))
}

fn connected(dst: SocketAddr) -> Result<UdpSocket> {
    let sock = UdpSocket::bind("0.0.0.0:0").context("bind")?;
    sock.connect(dst).context("connect")?;
    Ok(sock)
}

/// How many sockets each sender thread uses and over how many destination ports they spread.
#[derive(Clone, Copy)]
struct Spread {
    sockets: usize,
    dst_ports: u16,
}

#[allow(clippy::too_many_arguments)]
fn send(
    dst: SocketAddr,
    size: usize,
    rate: f64,
    secs: f64,
    run: u32,
    batch: usize,
    threads: usize,
    spread: Spread,
) -> Result<()> {
    if !(HEADER..=65507).contains(&size) {
        bail!("--size must be {HEADER}..=65507");
    }
    let threads = threads.clamp(1, 64);
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let socks = (0..spread.sockets)
                .map(|i| {
                    let mut to = dst;
                    to.set_port(dst.port().wrapping_add(((t * spread.sockets + i) % spread.dst_ports as usize) as u16));
                    let sock = connected(to)?;
                    // Room for a few ms of bursts; the socket blocks (backpressure) rather than drop when full.
                    let _ = sockopt::set_socket_send_buffer_size_force(&sock, 4 << 20);
                    Ok(sock)
                })
                .collect::<Result<Vec<_>>>()?;
            let stride = Stride { first: t as u64, step: threads as u64 };
            let rate = rate / threads as f64;
            Ok(std::thread::spawn(move || send_lane(&socks, size, rate, secs, run, batch, stride, start)))
        })
        .collect::<Result<_>>()?;
    let (mut sent, mut errors) = (0u64, 0u64);
    for w in workers {
        let (s, e) = w.join().map_err(|_| anyhow::anyhow!("sender thread panicked"))?;
        sent += s;
        errors += e;
    }
    let took = start.elapsed().as_secs_f64();
    println!("sent={sent} errors={errors} secs={took:.4} rate={:.0}", sent as f64 / took);
    Ok(())
}

/// The sequence numbers one sender thread uses: first, first + step, ...
#[derive(Clone, Copy)]
struct Stride {
    first: u64,
    step: u64,
}

/// One sender thread, its sockets in turn one batch each: (sent, errors).
#[allow(clippy::too_many_arguments)]
fn send_lane(
    socks: &[UdpSocket],
    size: usize,
    rate: f64,
    secs: f64,
    run: u32,
    batch: usize,
    stride: Stride,
    start: Instant,
) -> (u64, u64) {
    let batch = if rate > 0.0 { batch.min((rate / 4000.0).ceil() as usize) } else { batch }.clamp(1, 1024);
    let interval = if rate > 0.0 { Duration::from_secs_f64(batch as f64 / rate) } else { Duration::ZERO };
    let mut bufs = vec![vec![0u8; size]; batch];
    let (mut k, mut sent, mut errors) = (0u64, 0u64, 0u64);
    let end = start + Duration::from_secs_f64(secs);
    let mut next = start;
    let mut last = Instant::now();
    while last < end {
        let t_ns = start.elapsed().as_nanos() as u64;
        for (i, b) in bufs.iter_mut().enumerate() {
            stamp(b, run, stride.first + (k + i as u64) * stride.step, t_ns);
        }
        let iovs: Vec<[IoSlice<'_>; 1]> = bufs.iter().map(|b| [IoSlice::new(b)]).collect();
        let mut ctrl: Vec<SendAncillaryBuffer<'_, '_, '_>> = iovs.iter().map(|_| Default::default()).collect();
        let mut msgs: Vec<MMsgHdr<'_>> = iovs.iter().zip(ctrl.iter_mut()).map(|(v, c)| MMsgHdr::new(v, c)).collect();
        let sock = &socks[(k / batch as u64) as usize % socks.len()];
        let mut off = 0;
        while off < msgs.len() {
            match sendmmsg(sock, &mut msgs[off..], SendFlags::empty()) {
                Ok(n) => {
                    off += n;
                    sent += n as u64;
                }
                Err(Errno::INTR) => {}
                // ICMP errors reported on the connected socket (ECONNREFUSED) or a full device queue (ENOBUFS):
                // that datagram was not sent; counted, skipped.
                Err(_) => {
                    errors += 1;
                    off += 1;
                }
            }
        }
        k += batch as u64;
        last = Instant::now();
        if rate > 0.0 {
            next += interval;
            if next > last {
                std::thread::sleep(next - last);
            } else if last - next > Duration::from_millis(20) {
                next = last; // far behind (descheduled): do not burst to catch up
            }
        }
    }
    (sent, errors)
}

/// Counts each sequence number of the run once.
struct Counter {
    run: u32,
    seen: Vec<u64>,
    unique: u64,
    dup: u64,
    foreign: u64,
    bytes: u64,
}

impl Counter {
    fn add(&mut self, d: &[u8]) -> bool {
        let Some((seq, _)) = parse(d, self.run).filter(|(s, _)| *s < MAX_SEQ) else {
            self.foreign += 1;
            return false;
        };
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen.len() <= word {
            self.seen.resize(word + 1024, 0);
        }
        if self.seen[word] & bit != 0 {
            self.dup += 1;
        } else {
            self.seen[word] |= bit;
            self.unique += 1;
            self.bytes += d.len() as u64;
        }
        true
    }
}

fn recv(
    bind: SocketAddr,
    run: u32,
    idle: Duration,
    wait: Duration,
    rcvbuf: usize,
    ready: Option<std::path::PathBuf>,
) -> Result<()> {
    let sock = UdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?;
    if sockopt::set_socket_recv_buffer_size_force(&sock, rcvbuf).is_err() {
        let _ = sockopt::set_socket_recv_buffer_size(&sock, rcvbuf);
    }
    // Non-blocking from here on (quinn-udp's recvmmsg wrapper).
    let state = UdpSocketState::new((&sock).into()).context("socket state")?;
    if let Some(f) = ready {
        std::fs::write(&f, b"").with_context(|| format!("write {}", f.display()))?;
    }
    const B: usize = quinn_udp::BATCH_SIZE;
    let mut storage = vec![vec![0u8; 65536]; B];
    let mut meta = [RecvMeta::default(); B];
    let mut c = Counter { run, seen: Vec::new(), unique: 0, dup: 0, foreign: 0, bytes: 0 };
    let start = Instant::now();
    let (mut first, mut last): (Option<Instant>, Instant) = (None, start);
    loop {
        let mut slices: Vec<IoSliceMut<'_>> = storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        match state.recv((&sock).into(), &mut slices, &mut meta) {
            Ok(n) => {
                let mut ours = false;
                for (m, buf) in meta.iter().zip(slices.iter()).take(n) {
                    for d in buf[..m.len].chunks(m.stride.max(1)) {
                        ours |= c.add(d);
                    }
                }
                // Idle means nothing at all arrives: a backlog of an earlier probe still draining (a queue inside
                // a slow peer) keeps the receiver, and so the next probe, waiting until the path is quiet.
                last = Instant::now();
                if ours {
                    first.get_or_insert(last);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let now = Instant::now();
                if (first.is_some() && now - last >= idle) || now - start >= wait {
                    break;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("recv"),
        }
    }
    let span = first.map_or(0.0, |f| (last - f).as_secs_f64());
    println!("received={} dup={} foreign={} bytes={} span_secs={span:.4}", c.unique, c.dup, c.foreign, c.bytes);
    Ok(())
}

fn echo(bind: SocketAddr) -> Result<()> {
    let sock = UdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?;
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = sock.recv_from(&mut buf).context("recv")?;
        // A lost answer is the prober's to count; nothing to do here.
        let _ = sock.send_to(&buf[..n], from);
    }
}

fn ping(dst: SocketAddr, size: usize, rate: f64, secs: f64, run: u32, until_first: bool) -> Result<()> {
    if !(HEADER..=65507).contains(&size) || rate <= 0.0 {
        bail!("--size must be {HEADER}..=65507 and --rate > 0");
    }
    let sock = connected(dst)?;
    sock.set_read_timeout(Some(Duration::from_millis(100))).context("timeout")?;
    let tx = sock.try_clone().context("clone")?;
    let start = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let sender_done = done.clone();
    let sender = std::thread::spawn(move || {
        let mut buf = vec![0u8; size];
        let interval = Duration::from_secs_f64(1.0 / rate);
        let end = start + Duration::from_secs_f64(secs);
        let (mut seq, mut next) = (0u64, start);
        while Instant::now() < end && !sender_done.load(Ordering::Acquire) {
            stamp(&mut buf, run, seq, start.elapsed().as_nanos() as u64);
            let _ = tx.send(&buf);
            seq += 1;
            next += interval;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        sender_done.store(true, Ordering::Release);
        seq
    });
    let mut rtt_us: Vec<f64> = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut quiet_since: Option<Instant> = None;
    let mut first: Option<Duration> = None;
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                if let Some((_, t)) = parse(&buf[..n], run) {
                    let now = start.elapsed();
                    first.get_or_insert(now);
                    rtt_us.push((now.as_nanos() as u64).saturating_sub(t) as f64 / 1000.0);
                    if until_first {
                        done.store(true, Ordering::Release);
                        break;
                    }
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            // An ICMP error (no route, no listener yet) on the connected socket: keep going, the loss is counted.
            Err(_) => {}
        }
        if done.load(Ordering::Acquire) {
            let q = *quiet_since.get_or_insert_with(Instant::now);
            if q.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
    }
    let sent = sender.join().map_err(|_| anyhow::anyhow!("sender thread panicked"))?;
    rtt_us.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if rtt_us.is_empty() { f64::NAN } else { rtt_us[((rtt_us.len() - 1) as f64 * p).round() as usize] }
    };
    let first_ms = first.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    println!(
        "sent={sent} answered={} first_ms={first_ms:.1} p50_us={:.0} p99_us={:.0} max_us={:.0}",
        rtt_us.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_sequence_number_once_and_only_its_run() {
        let mut c = Counter { run: 7, seen: Vec::new(), unique: 0, dup: 0, foreign: 0, bytes: 0 };
        let mut d = vec![0u8; 64];
        for seq in [0, 1, 1, 200_000, 3] {
            stamp(&mut d, 7, seq, 0);
            c.add(&d);
        }
        stamp(&mut d, 8, 2, 0); // another run: a late datagram of an earlier probe
        c.add(&d);
        c.add(&d[..10]); // too short
        assert_eq!((c.unique, c.dup, c.foreign, c.bytes), (4, 1, 2, 4 * 64));
    }
}
