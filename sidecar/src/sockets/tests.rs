//! Forward sockets across live reconfiguration: a datagram is tagged with the id of the forward that owns the
//! port now (a renamed forward keeps the socket, with the new id), a moved port is bound anew, a removed forward's
//! socket is closed, and the datapath is told which forwards listen.

use std::net::SocketAddrV4;
use std::time::Duration;

use iotrelay_api::validate::ValidatedForward;
use iotrelay_crypto::SeededRandom;

use super::*;
use crate::ingress::{BUDGETS, Datagram, QUOTAS, Source};

fn forward(name: &str, port: u16) -> ValidatedForward {
    ValidatedForward {
        name: name.into(),
        listen_port: port,
        allowed_sources: vec!["127.0.0.0/8".parse().unwrap()],
        target: SocketAddrV4::new(Ipv4Addr::new(100, 64, 1, 10), 7000),
        idle_timeout: Duration::from_secs(60),
    }
}

/// A port nobody listens on now (the kernel's pick, released).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

/// Sends one datagram to `port` and waits (bounded) for it in the ingress.
async fn round_trip(ingress: &Ingress, port: u16) -> Datagram {
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"hello", (Ipv4Addr::LOCALHOST, port)).unwrap();
    let mut out = Vec::new();
    for _ in 0..500 {
        ingress.pop_batch(&mut out, QUOTAS);
        if let Some(d) = out.pop() {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no datagram from port {port}");
}

fn listening(dp: &Datapath) -> Vec<(String, bool)> {
    dp.snapshot().1.into_iter().map(|f| (f.name, f.listening)).collect()
}

#[tokio::test]
async fn forward_sockets_follow_reconfiguration() {
    let outside = || async { Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()) };
    let mut sockets = Sockets::new(outside().await, outside().await).unwrap();
    let ingress = Arc::new(Ingress::new(BUDGETS));
    let (p1, p2) = (free_port(), free_port());
    let local = Ipv4Addr::new(192, 0, 2, 1);
    let mut rng = SeededRandom::new(1);
    let inside = Ipv4Addr::new(100, 127, 0, 1);
    let mut dp = Datapath::new(inside, 64, local, Vec::new(), vec![forward("a", p1)], Duration::ZERO, &mut rng);
    sockets.bind_forwards(&mut dp, &ingress).await;
    let a = dp.forwards().next().unwrap().0;
    assert_eq!(round_trip(&ingress, p1).await.source, Source::Forward(a));
    assert_eq!(listening(&dp), [("a".to_string(), true)]);

    // Renamed: same port, new id; the socket stays (no second bind of the port).
    dp.set_forwards(vec![forward("b", p1)]);
    sockets.bind_forwards(&mut dp, &ingress).await;
    let b = dp.forwards().next().unwrap().0;
    assert_ne!(a, b);
    assert_eq!(round_trip(&ingress, p1).await.source, Source::Forward(b));
    assert!(sockets.forward(a).is_none(), "the old id still holds a socket");
    assert_eq!(sockets.forward(b).map(|f| f.port), Some(p1));

    // Moved to another port: bound there, the old port closed.
    dp.set_forwards(vec![forward("b", p2)]);
    sockets.bind_forwards(&mut dp, &ingress).await;
    assert_eq!(round_trip(&ingress, p2).await.source, Source::Forward(b));
    assert_eq!(sockets.forward(b).map(|f| f.port), Some(p2));
    assert_eq!(listening(&dp), [("b".to_string(), true)]);

    // A port that cannot be bound: not listening, reported.
    let taken = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    dp.set_forwards(vec![forward("b", p2), forward("c", busy)]);
    sockets.bind_forwards(&mut dp, &ingress).await;
    assert_eq!(listening(&dp), [("b".to_string(), true), ("c".to_string(), false)]);

    // Removed: every forward socket goes.
    dp.set_forwards(Vec::new());
    sockets.bind_forwards(&mut dp, &ingress).await;
    assert!(sockets.forwards.iter().all(Option::is_none));
}

#[test]
fn receive_queue_drops_are_the_kernels_count() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // The smallest receive buffer the kernel allows holds a couple of these datagrams; nobody reads.
    rustix::net::sockopt::set_socket_recv_buffer_size(&rx, 1).unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(receive_queue_drops(rx.as_fd()), Some(0));
    for _ in 0..200 {
        tx.send_to(&[0u8; 1000], rx.local_addr().unwrap()).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut drops = 0;
    while std::time::Instant::now() < deadline {
        drops = receive_queue_drops(rx.as_fd()).unwrap();
        if drops >= 190 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!((190..=200).contains(&drops), "{drops} of 200 datagrams counted as dropped");
}

/// The first datagram on a socket just bound goes out (a relay's first IKE_SA_INIT is sent right after the bind,
/// before the runtime has polled the socket once).
#[tokio::test]
async fn a_fresh_socket_sends_at_once() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let sock = Sock::new(Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap())).unwrap();
    sock.send(rx.local_addr().unwrap(), b"first", None).expect("the first send on a fresh socket");
    let mut buf = [0u8; 16];
    let (n, _) = rx.recv_from(&mut buf).expect("the datagram arrives");
    assert_eq!(&buf[..n], b"first");
}
