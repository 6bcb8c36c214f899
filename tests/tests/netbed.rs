//! The bad-link test bed checked against plain sockets on the test host:
//! each impairment does what it says, touches only what it says, and is
//! gone when its guard is dropped; coturn starts, answers and serves TLS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testbed::harness::{self, TEST_HOST};
use testbed::netem::{self, Blackout, RelayOnly, UdpBottleneck, UdpLoss};
use testbed::turn::{self, TurnServer};

fn udp(port: u16) -> UdpSocket {
    UdpSocket::bind((TEST_HOST, port)).unwrap()
}

/// Sends `count` datagrams of `size` bytes from `from` to `to`, paced at
/// `per_second`, each stamped with its send time; returns (sent, arrived)
/// in µs since the start for those that arrived.
fn stream(
    from: &UdpSocket,
    to: &UdpSocket,
    count: usize,
    size: usize,
    per_second: f64,
) -> Vec<(u64, u64)> {
    let epoch = Instant::now();
    let receiver = to.try_clone().unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut delays = Vec::new();
        let mut buffer = vec![0u8; 65536];
        while let Ok(length) = receiver.recv(&mut buffer) {
            if length >= 8 {
                let sent = u64::from_be_bytes(buffer[..8].try_into().unwrap());
                delays.push((sent, epoch.elapsed().as_micros() as u64));
            }
        }
        delays
    });
    let destination = to.local_addr().unwrap();
    let mut payload = vec![0u8; size.max(8)];
    for index in 0..count {
        let due = epoch + Duration::from_secs_f64(index as f64 / per_second);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        payload[..8].copy_from_slice(&(epoch.elapsed().as_micros() as u64).to_be_bytes());
        // Dropped on the way in, so the send itself succeeds (checked in
        // the blackout test).
        let _ = from.send_to(&payload, destination);
    }
    reader.join().unwrap()
}

/// One round trip of `bytes` over a fresh TCP connection to an echo server.
fn tcp_round_trip(bytes: usize) -> std::io::Result<Duration> {
    let listener = TcpListener::bind((TEST_HOST, 0))?;
    let address = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut connection, _) = listener.accept()?;
        let mut buffer = vec![0u8; bytes];
        connection.read_exact(&mut buffer)?;
        connection.write_all(&buffer)
    });
    let start = Instant::now();
    let mut client = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    client.write_all(&vec![7u8; bytes])?;
    let mut back = vec![0u8; bytes];
    client.read_exact(&mut back)?;
    server.join().expect("echo thread")?;
    Ok(start.elapsed())
}

fn our_tables() -> usize {
    let out = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(" ca_"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_loss_drops_its_share_of_udp_both_ways_and_no_tcp() {
    harness::require_test_netns();
    let _link = netem::exclusive().await;
    let (a, b) = (udp(0), udp(0));
    let loss = UdpLoss::start(5.0).unwrap();
    let (forward, backward) = tokio::task::spawn_blocking(move || {
        (
            stream(&a, &b, 2000, 200, 4000.0).len(),
            stream(&b, &a, 2000, 200, 4000.0).len(),
        )
    })
    .await
    .unwrap();
    let lost = 4000 - (forward + backward);
    let measured = lost as f64 * 100.0 / 4000.0;
    let counters = loss.counters().unwrap();
    eprintln!(
        "5 % loss: {forward}/2000 forward, {backward}/2000 back, {measured:.2} % lost; {counters:?}"
    );
    assert!((3.5..=6.5).contains(&measured), "{measured:.2} % lost");
    assert!(
        forward < 2000 && backward < 2000,
        "one direction lost nothing"
    );
    assert_eq!(counters.udp_dropped as usize, lost);
    assert!(counters.udp_seen >= 4000);
    // TCP passes untouched.
    tcp_round_trip(2 << 20).unwrap();
    assert_eq!(loss.counters().unwrap().udp_dropped as usize, lost);
    drop(loss);
    assert_eq!(our_tables(), 0, "the loss table outlived its guard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackout_drops_all_udp_while_tcp_still_works_and_lifts() {
    harness::require_test_netns();
    let _link = netem::exclusive().await;
    let blackout = Arc::new(Blackout::new().unwrap());
    let check = blackout.clone();
    tokio::task::spawn_blocking(move || {
        let (a, b) = (udp(0), udp(0));
        assert_eq!(stream(&a, &b, 200, 100, 2000.0).len(), 200, "off drops");
        check.on().unwrap();
        assert!(check.is_on());
        // Silent, as on a real path: the sender is not told (no EPERM).
        a.send_to(b"x", b.local_addr().unwrap())
            .expect("a send into the blackout failed at the sender");
        assert_eq!(stream(&a, &b, 200, 100, 2000.0).len(), 0);
        assert_eq!(stream(&b, &a, 200, 100, 2000.0).len(), 0);
        tcp_round_trip(1 << 20).expect("TCP through a UDP blackout");
        check.off().unwrap();
        assert_eq!(stream(&a, &b, 200, 100, 2000.0).len(), 200);
    })
    .await
    .unwrap();
    let counters = blackout.counters().unwrap();
    assert_eq!(counters.udp_dropped, 401, "{counters:?}");
    // A timed pulse from async code.
    let (start, end) = blackout
        .pulse(Duration::from_millis(50), Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    let length = end - start;
    assert!(
        length >= Duration::from_millis(300) && length < Duration::from_millis(800),
        "{length:?}"
    );
    assert_eq!(blackout.history().len(), 2);
    assert!(!blackout.is_on());
    drop(blackout);
    assert_eq!(our_tables(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bottleneck_passes_its_rate_queues_then_drops_and_widens_live() {
    harness::require_test_netns();
    let _link = netem::exclusive().await;
    let bottleneck = Arc::new(UdpBottleneck::start(700, 30).unwrap());
    let live = bottleneck.clone();
    let (squeezed, widened) = tokio::task::spawn_blocking(move || {
        let (a, b) = (udp(0), udp(0));
        // 2 Mbit/s of 1000-byte datagrams for 3 s into 700 kbit/s.
        let squeezed = stream(&a, &b, 750, 1000, 250.0);
        live.set_rate(5000).unwrap();
        let widened = stream(&a, &b, 750, 1000, 250.0);
        (squeezed, widened)
    })
    .await
    .unwrap();
    let counters = bottleneck.counters().unwrap();
    // On the wire a 1000-byte datagram is 1042 bytes (UDP, IP, lo's header).
    // Over the span the packets arrived in.
    let wire_kbit = |arrivals: &[(u64, u64)]| {
        let first = arrivals.first().map_or(0, |(_, arrived)| *arrived);
        let last = arrivals.last().map_or(0, |(_, arrived)| *arrived);
        arrivals.len().saturating_sub(1) as f64 * 1042.0 * 8.0 / (last - first).max(1) as f64
            * 1000.0
    };
    let max_delay_ms = |arrivals: &[(u64, u64)]| {
        arrivals
            .iter()
            .map(|(sent, arrived)| arrived - sent)
            .max()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let squeezed_rate = wire_kbit(&squeezed);
    let widened_rate = wire_kbit(&widened);
    let (squeezed_max_ms, widened_max_ms) = (max_delay_ms(&squeezed), max_delay_ms(&widened));
    eprintln!(
        "700 kbit/s, 30 packets: {} of 750 passed ({squeezed_rate:.0} kbit/s), max delay \
         {squeezed_max_ms:.0} ms; widened to 5 Mbit/s: {} of 750 ({widened_rate:.0} kbit/s), \
         max delay {widened_max_ms:.1} ms; {counters:?}",
        squeezed.len(),
        widened.len()
    );
    // About its rate.
    assert!(
        (600.0..=800.0).contains(&squeezed_rate),
        "{squeezed_rate:.0} kbit/s"
    );
    // A queue: 30 packets at 700 kbit/s hold about 360 ms.
    assert!(
        (200.0..=600.0).contains(&squeezed_max_ms),
        "{squeezed_max_ms} ms"
    );
    assert!(counters.dropped > 100, "{counters:?}");
    assert_eq!(widened.len(), 750, "the widened link still drops");
    assert!(widened_max_ms < 100.0, "{widened_max_ms} ms");
    // TCP goes around the bottleneck: 4 MiB each way well above 700 kbit/s.
    let taken = tokio::task::spawn_blocking(|| tcp_round_trip(4 << 20))
        .await
        .unwrap()
        .unwrap();
    eprintln!("4 MiB each way over TCP beside the bottleneck: {taken:?}");
    assert!(taken < Duration::from_secs(3), "TCP took {taken:?}");
    drop(bottleneck);
    let qdiscs = std::process::Command::new("tc")
        .args(["qdisc", "show", "dev", "lo"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&qdiscs.stdout).contains("htb"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_passes_the_turn_port_and_relay_to_relay_and_nothing_else() {
    harness::require_test_netns();
    let _link = netem::exclusive().await;
    netem::set_ephemeral_ports(turn::EPHEMERAL_PORTS).unwrap();
    tokio::task::spawn_blocking(|| {
        let (host_a, host_b) = (udp(0), udp(0));
        let port = host_a.local_addr().unwrap().port();
        assert!(turn::EPHEMERAL_PORTS.contains(&port), "ephemeral {port}");
        let turn_port = udp(turn::TURN_PORT);
        let (relay_a, relay_b) = (udp(50_010), udp(50_020));
        let relay_only = RelayOnly::udp(&[turn::TURN_PORT], turn::RELAY_PORTS).unwrap();
        assert_eq!(stream(&host_a, &turn_port, 50, 100, 1000.0).len(), 50);
        assert_eq!(stream(&turn_port, &host_a, 50, 100, 1000.0).len(), 50);
        assert_eq!(stream(&relay_a, &relay_b, 50, 100, 1000.0).len(), 50);
        assert_eq!(stream(&host_a, &host_b, 50, 100, 1000.0).len(), 0);
        assert_eq!(stream(&host_a, &relay_a, 50, 100, 1000.0).len(), 0);
        assert_eq!(stream(&relay_b, &host_b, 50, 100, 1000.0).len(), 0);
        let counters = relay_only.counters().unwrap();
        eprintln!("relay only (UDP): {counters:?}");
        assert_eq!(
            (counters.turn_udp, counters.relayed, counters.udp_dropped),
            (100, 50, 150)
        );
        drop(relay_only);
        // TURN over TCP: no client UDP at all, TCP to the TURN port passes.
        let relay_only = RelayOnly::tcp(turn::RELAY_PORTS).unwrap();
        assert_eq!(stream(&host_a, &turn_port, 50, 100, 1000.0).len(), 0);
        assert_eq!(stream(&relay_a, &relay_b, 50, 100, 1000.0).len(), 50);
        let listener = TcpListener::bind((TEST_HOST, turn::TURN_PORT)).unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect_timeout(&address, Duration::from_secs(2)).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        client.write_all(b"allocate").unwrap();
        let mut got = [0u8; 8];
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"allocate");
        let counters = relay_only.counters().unwrap();
        eprintln!("relay only (TCP): {counters:?}");
        assert_eq!((counters.turn_udp, counters.relayed), (0, 50));
    })
    .await
    .unwrap();
    assert_eq!(our_tables(), 0);
}

/// A STUN Binding request over TLS, the certificate checked against `cert`.
fn stun_over_tls(cert: &[u8]) -> anyhow::Result<usize> {
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(cert.to_vec()))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connection = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(TEST_HOST)?.to_owned(),
    )?;
    let tcp = TcpStream::connect((TEST_HOST, turn::TURNS_PORT))?;
    tcp.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(&[9u8; 12]);
    tls.write_all(&request)?;
    let mut header = [0u8; 20];
    tls.read_exact(&mut header)?;
    anyhow::ensure!(header[..2] == [0x01, 0x01], "not a Binding success");
    Ok(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_answers_on_udp_tcp_and_real_tls_and_is_reaped() {
    harness::require_test_netns();
    let _link = netem::exclusive().await;
    let server = TurnServer::start().await.unwrap();
    let cert = server.cert_der().to_vec();
    tokio::task::spawn_blocking(move || {
        turn::stun_binding(
            SocketAddr::new(TEST_HOST.parse().unwrap(), turn::TURN_PORT),
            Duration::from_secs(1),
        )
        .unwrap();
        stun_over_tls(&cert).unwrap();
    })
    .await
    .unwrap();
    let servers = server.ice_servers_json(turn::TurnTransport::Tls);
    assert_eq!(servers[0]["urls"][0], "turns:10.213.0.1:5349?transport=tcp");
    assert_eq!(
        servers[0]["username"],
        server.camera_user().username.as_str()
    );
    let log = server.log_text();
    assert!(log.contains("TLS/TCP listener opened"), "{log}");
    assert!(!log.contains(server.camera_user().credential()));
    drop(server);
    // Killed and reaped: the port is free again.
    UdpSocket::bind((TEST_HOST, turn::TURN_PORT)).expect("coturn still holds its port");
}
