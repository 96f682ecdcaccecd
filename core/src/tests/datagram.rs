//! UDP echo: the server's verdicts and the client's accounting.

#[allow(unused_imports)]
use super::prelude::*;

use std::net::SocketAddr;
use std::time::Duration;

use super::util::t0;

use bytes::Bytes;
use proptest::prelude::*;

use crate::MAX_DATAGRAM;
use crate::UDP_CLIENT_HEADER;
use crate::{
    DropReason, Transmit, UdpClientConfig, UdpClientError, UdpClientEvent, UdpConfig, UdpEcho,
    UdpEchoClient, UdpReport, UdpStats,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn unlimited() -> UdpConfig {
    UdpConfig {
        rate: 0,
        ..UdpConfig::default()
    }
}

fn drain(server: &mut UdpEcho) -> Vec<Transmit> {
    std::iter::from_fn(|| server.poll_transmit()).collect()
}

#[test]
fn each_datagram_goes_back_whole_to_its_sender() {
    let now = t0();
    let mut server = UdpEcho::new(UdpConfig::default());
    let (a, b) = (addr("10.0.0.1:5000"), addr("10.0.0.2:6000"));
    assert_eq!(
        server.handle_datagram(a, Bytes::from_static(b"one"), now),
        Ok(())
    );
    assert_eq!(server.handle_datagram(b, Bytes::new(), now), Ok(()));
    let big = Bytes::from(vec![7u8; MAX_DATAGRAM]);
    assert_eq!(server.handle_datagram(a, big.clone(), now), Ok(()));
    let out = drain(&mut server);
    assert_eq!(
        out,
        vec![
            Transmit {
                to: a,
                payload: Bytes::from_static(b"one")
            },
            Transmit {
                to: b,
                payload: Bytes::new()
            },
            Transmit {
                to: a,
                payload: big
            },
        ]
    );
    assert_eq!(
        server.stats(),
        UdpStats {
            received: 3,
            echoed: 3,
            echoed_bytes: 3 + MAX_DATAGRAM as u64,
            ..UdpStats::default()
        }
    );
    assert!(server.poll_transmit().is_none());
    assert!(server.wants_read());
}

#[test]
fn loop_prone_source_ports_are_never_answered() {
    let now = t0();
    let mut server = UdpEcho::new(unlimited());
    for port in [0, 7, 13, 19, 37] {
        let from = SocketAddr::new([10, 0, 0, 1].into(), port);
        assert_eq!(
            server.handle_datagram(from, Bytes::from_static(b"x"), now),
            Err(DropReason::LoopPort(port))
        );
    }
    assert!(server.poll_transmit().is_none());
    assert_eq!(server.stats().loop_ports, 5);
    assert_eq!(server.stats().dropped(), 5);
}

#[test]
fn a_source_gets_its_rate_in_a_burst_then_one_per_interval() {
    let t0 = t0();
    let mut server = UdpEcho::new(UdpConfig {
        rate: 10,
        ..UdpConfig::default()
    });
    let (a, b) = (addr("10.0.0.1:5000"), addr("10.0.0.2:5000"));
    let x = || Bytes::from_static(b"x");
    for _ in 0..10 {
        assert_eq!(server.handle_datagram(a, x(), t0), Ok(()));
    }
    assert_eq!(
        server.handle_datagram(a, x(), t0),
        Err(DropReason::RateLimited)
    );
    // Another port on the same address shares the budget...
    let a2 = addr("10.0.0.1:5001");
    assert_eq!(
        server.handle_datagram(a2, x(), t0),
        Err(DropReason::RateLimited)
    );
    // ...another address does not.
    assert_eq!(server.handle_datagram(b, x(), t0), Ok(()));
    // One interval (100 ms) later, exactly one more.
    let t1 = t0 + Duration::from_millis(100);
    assert_eq!(server.handle_datagram(a, x(), t1), Ok(()));
    assert_eq!(
        server.handle_datagram(a, x(), t1),
        Err(DropReason::RateLimited)
    );
    // A second of quiet restores the whole burst.
    let t2 = t1 + Duration::from_secs(1);
    for _ in 0..10 {
        assert_eq!(server.handle_datagram(a, x(), t2), Ok(()));
    }
    assert_eq!(
        server.handle_datagram(a, x(), t2),
        Err(DropReason::RateLimited)
    );
    assert_eq!(drain(&mut server).len(), 22);
    assert_eq!(server.stats().rate_limited, 4);
}

#[test]
fn sustained_sending_gets_exactly_the_rate() {
    let t0 = t0();
    let mut server = UdpEcho::new(UdpConfig {
        rate: 100,
        ..UdpConfig::default()
    });
    let from = addr("10.0.0.1:5000");
    // 1,000 datagrams/s for 10 s: the burst (100) plus 100/s.
    let mut passed = 0;
    for ms in 0..10_000u64 {
        let now = t0 + Duration::from_millis(ms);
        passed += u64::from(server.handle_datagram(from, Bytes::new(), now).is_ok());
        drain(&mut server);
    }
    assert_eq!(
        passed,
        100 + 10 * 100 - 1,
        "burst + rate x 10 s (the last slot is at 10.0 s)"
    );
}

#[test]
fn a_full_source_table_turns_new_sources_away_until_old_ones_go_quiet() {
    let t0 = t0();
    let mut server = UdpEcho::new(UdpConfig {
        rate: 10,
        max_sources: 2,
        ..UdpConfig::default()
    });
    let x = || Bytes::from_static(b"x");
    let (a, b, c) = (
        addr("10.0.0.1:9000"),
        addr("10.0.0.2:9000"),
        addr("10.0.0.3:9000"),
    );
    assert_eq!(server.handle_datagram(a, x(), t0), Ok(()));
    assert_eq!(server.handle_datagram(b, x(), t0), Ok(()));
    assert_eq!(
        server.handle_datagram(c, x(), t0),
        Err(DropReason::TooManySources)
    );
    // a and b owe nothing 100 ms later: their entries are swept.
    let later = t0 + Duration::from_millis(150);
    assert_eq!(server.handle_datagram(c, x(), later), Ok(()));
    assert_eq!(server.stats().rate_limited, 1);
}

#[test]
fn a_full_reply_queue_drops_and_stops_reading_until_sent() {
    let now = t0();
    let mut server = UdpEcho::new(UdpConfig {
        max_queued: 10,
        ..unlimited()
    });
    let from = addr("10.0.0.1:5000");
    assert_eq!(
        server.handle_datagram(from, Bytes::from(vec![1; 8]), now),
        Ok(())
    );
    assert!(server.wants_read());
    assert_eq!(
        server.handle_datagram(from, Bytes::from(vec![2; 8]), now),
        Err(DropReason::QueueFull)
    );
    // A datagram larger than the whole queue still goes when it is empty.
    let out = drain(&mut server);
    assert_eq!(out.len(), 1);
    assert_eq!(
        server.handle_datagram(from, Bytes::from(vec![3; 20]), now),
        Ok(())
    );
    assert!(!server.wants_read());
    let reply = server.poll_transmit().unwrap();
    assert!(server.wants_read());
    server.handle_send_failed(&reply);
    assert_eq!(
        server.stats(),
        UdpStats {
            received: 3,
            echoed: 1,
            echoed_bytes: 8,
            not_sent: 2,
            ..UdpStats::default()
        }
    );
}

fn config(count: u64, interval_ms: u64, wait_ms: u64) -> UdpClientConfig {
    UdpClientConfig {
        count,
        interval: Duration::from_millis(interval_ms),
        wait: Duration::from_millis(wait_ms),
    }
}

fn events(client: &mut UdpEchoClient) -> Vec<UdpClientEvent> {
    std::iter::from_fn(|| client.poll_event()).collect()
}

#[test]
fn the_client_paces_its_datagrams_and_finishes_when_all_are_back() {
    let t0 = t0();
    let mut client = UdpEchoClient::new(&b"hi"[..], config(3, 10, 1_000), t0).unwrap();
    let d0 = client.poll_transmit(t0).unwrap();
    assert_eq!(d0.len(), UDP_CLIENT_HEADER + 2);
    assert_eq!(&d0[..8], &0u64.to_be_bytes());
    assert!(client.poll_transmit(t0).is_none(), "paced");
    assert_eq!(client.poll_timeout(), Some(t0 + Duration::from_millis(10)));
    let t1 = t0 + Duration::from_millis(10);
    let d1 = client.poll_transmit(t1).unwrap();
    let t2 = t0 + Duration::from_millis(20);
    let d2 = client.poll_transmit(t2).unwrap();
    assert!(
        client.poll_transmit(t2 + Duration::from_secs(5)).is_none(),
        "only 3"
    );
    assert_eq!(client.poll_timeout(), Some(t2 + Duration::from_secs(1)));
    // Back out of order: 2, 0, 1.
    let t3 = t0 + Duration::from_millis(50);
    client.handle_datagram(&d2, t3);
    client.handle_datagram(&d0, t3);
    client.handle_datagram(&d1, t3);
    let body = Bytes::from_static(b"hi");
    assert_eq!(
        events(&mut client),
        vec![
            UdpClientEvent::Reply {
                seq: 2,
                rtt: Duration::from_millis(30),
                body: body.clone(),
                reordered: false
            },
            UdpClientEvent::Reply {
                seq: 0,
                rtt: Duration::from_millis(50),
                body: body.clone(),
                reordered: true
            },
            UdpClientEvent::Reply {
                seq: 1,
                rtt: Duration::from_millis(40),
                body,
                reordered: true
            },
            UdpClientEvent::Done(UdpReport {
                sent: 3,
                received: 3,
                reordered: 2,
                min_rtt: Some(Duration::from_millis(30)),
                max_rtt: Some(Duration::from_millis(50)),
                ..UdpReport::default()
            }),
        ]
    );
    assert!(client.is_done());
    assert_eq!(client.poll_timeout(), None);
    assert!(client.report().is_complete());
    // Late copies change nothing.
    client.handle_datagram(&d0, t3);
    assert!(client.poll_event().is_none());
}

#[test]
fn missing_replies_are_counted_lost_when_the_wait_runs_out() {
    let t0 = t0();
    let mut client = UdpEchoClient::new(Bytes::new(), config(2, 0, 500), t0).unwrap();
    let d0 = client.poll_transmit(t0).unwrap();
    let _lost = client.poll_transmit(t0).unwrap();
    client.handle_datagram(&d0, t0);
    client.handle_datagram(&d0, t0);
    client.handle_timeout(t0 + Duration::from_millis(499));
    assert!(!client.is_done());
    client.handle_timeout(t0 + Duration::from_millis(500));
    let report = UdpReport {
        sent: 2,
        received: 1,
        lost: 1,
        duplicates: 1,
        min_rtt: Some(Duration::ZERO),
        max_rtt: Some(Duration::ZERO),
        ..UdpReport::default()
    };
    assert_eq!(
        events(&mut client),
        vec![
            UdpClientEvent::Reply {
                seq: 0,
                rtt: Duration::ZERO,
                body: Bytes::new(),
                reordered: false
            },
            UdpClientEvent::Duplicate { seq: 0 },
            UdpClientEvent::Done(report),
        ]
    );
    assert!(!report.is_complete());
}

#[test]
fn anything_but_an_unchanged_datagram_of_ours_is_corrupt() {
    let t0 = t0();
    let mut client = UdpEchoClient::new(&b"body"[..], config(2, 0, 500), t0).unwrap();
    let d0 = client.poll_transmit(t0).unwrap();
    let mut changed = d0.to_vec();
    changed[UDP_CLIENT_HEADER] ^= 1;
    let mut unsent = d0.to_vec();
    unsent[..8].copy_from_slice(&1u64.to_be_bytes()); // not sent yet
    let mut future = d0.to_vec();
    future[8..16].copy_from_slice(&u64::MAX.to_be_bytes()); // sent after now
    for bad in [
        &changed[..],
        &unsent,
        &future,
        &d0[..UDP_CLIENT_HEADER - 1],
        &d0[..UDP_CLIENT_HEADER],
        &[],
    ] {
        client.handle_datagram(bad, t0);
    }
    let lens: Vec<_> = events(&mut client)
        .into_iter()
        .map(|e| match e {
            UdpClientEvent::Corrupt { len } => len,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lens, [20, 20, 20, 15, 16, 0]);
    assert_eq!(client.report().corrupt, 6);
    assert_eq!(client.report().received, 0);
}

#[test]
fn bad_client_settings_are_refused() {
    let t0 = t0();
    assert_eq!(
        UdpEchoClient::new(Bytes::new(), config(0, 0, 0), t0).unwrap_err(),
        UdpClientError::Count(0)
    );
    let body = vec![0u8; MAX_DATAGRAM - UDP_CLIENT_HEADER + 1];
    let err = UdpEchoClient::new(body, config(1, 0, 0), t0).unwrap_err();
    assert_eq!(
        err,
        UdpClientError::TooLarge {
            body: MAX_DATAGRAM - UDP_CLIENT_HEADER + 1
        }
    );
    assert_eq!(
        err.to_string(),
        "a 65492-byte body makes 65508-byte datagrams; at most 65507 fit"
    );
    assert!(
        UdpEchoClient::new(
            vec![0u8; MAX_DATAGRAM - UDP_CLIENT_HEADER],
            config(1, 0, 0),
            t0
        )
        .is_ok()
    );
}

/// What happens to one datagram on the way there and back.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Lost,
    Once(u8),
    Twice(u8, u8),
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        1 => Just(Fate::Lost),
        6 => any::<u8>().prop_map(Fate::Once),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Fate::Twice(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(super::pair::cases()))]

    /// Client -> server -> client with every datagram lost, delivered once
    /// or twice, each copy with its own delay: the report matches an
    /// independent count of what arrived (until all were back), exactly.
    #[test]
    fn the_client_accounts_exactly_for_loss_duplicates_and_reordering(
        fates in prop::collection::vec(fate(), 1..200),
        body_len in 0usize..64,
    ) {
        let t0 = t0();
        let count = fates.len() as u64;
        let mut client = UdpEchoClient::new(vec![9u8; body_len], config(count, 0, 1_000), t0).unwrap();
        let mut server = UdpEcho::new(unlimited());
        let from = addr("10.0.0.1:40000");
        // Arrivals: (delay, tie-break, datagram echoed by the server).
        let mut arrivals = Vec::new();
        for (seq, fate) in fates.iter().enumerate() {
            let datagram = client.poll_transmit(t0).unwrap();
            let delays: &[u8] = match fate {
                Fate::Lost => &[],
                Fate::Once(d) => &[*d][..],
                Fate::Twice(a, b) => &[*a, *b][..],
            };
            for (copy, delay) in delays.iter().enumerate() {
                server.handle_datagram(from, datagram.clone(), t0).unwrap();
                let echoed = server.poll_transmit().unwrap();
                prop_assert_eq!(echoed.to, from);
                arrivals.push((*delay, seq, copy, echoed.payload));
            }
        }
        prop_assert!(client.poll_transmit(t0).is_none());
        arrivals.sort_by_key(|(delay, seq, copy, _)| (*delay, *seq, *copy));
        // The independent count, from the order of arrival alone.
        let (mut seen, mut highest) = (std::collections::HashSet::new(), None::<usize>);
        let mut expect = UdpReport { sent: count, ..UdpReport::default() };
        for (delay, seq, _, payload) in &arrivals {
            client.handle_datagram(payload, t0 + Duration::from_millis(u64::from(*delay)));
            if seen.insert(*seq) {
                expect.received += 1;
                expect.reordered += u64::from(highest.is_some_and(|h| *seq < h));
                highest = highest.max(Some(*seq));
            } else {
                expect.duplicates += 1;
            }
            if expect.received == count {
                break; // all back: the client is done, later copies go unseen
            }
        }
        expect.lost = count - expect.received;
        client.handle_timeout(t0 + Duration::from_secs(2));
        let mut report = client.report();
        prop_assert!(client.is_done());
        (report.min_rtt, report.max_rtt) = (None, None);
        prop_assert_eq!(report, expect);
        let done = events(&mut client).into_iter().filter(|e| matches!(e, UdpClientEvent::Done(_))).count();
        prop_assert_eq!(done, 1);
    }
}
