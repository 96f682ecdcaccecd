//! A client and a server over the in-memory link: the end-to-end contract.

#[allow(unused_imports)]
use super::prelude::*;

use proptest::prelude::*;

use super::util::*;
use crate::{
    Action, ClientConfig, ClientEvent, CloseReason, EchoClient, EchoError, ServerConfig, WaterMarks,
};

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// What every successful pair must satisfy.
fn assert_exact_echo(pair: &mut Pair, message: &[u8], max_steps: usize) {
    let out = pair.drive_bounded(max_steps);
    assert_eq!(out.echoed, message, "echo differs");
    let len = message.len() as u64;
    assert_eq!(
        out.terminal,
        vec![ClientEvent::Done {
            sent: len,
            received: len
        }]
    );
    assert_eq!(out.server_actions, vec![Action::Close]);
    assert_eq!(pair.server.close_reason(), Some(CloseReason::Done));
    assert_eq!(pair.client.close_reason(), Some(CloseReason::Done));
    assert_eq!(pair.server.protocol().received(), len);
    assert_eq!(pair.factory.open_connections(), 0, "count back to 0");
}

#[test]
fn every_chunking_and_write_budget_from_1_to_17_echoes_exactly() {
    let message = data(300);
    for chunk in 1..=17 {
        for budget in 1..=17 {
            let knobs = Knobs::fixed(chunk, budget);
            let mut pair = Pair::message(&message).with_knobs(knobs.clone(), knobs);
            assert_exact_echo(&mut pair, &message, 10_000);
            let client_actions = &pair.out.client_actions;
            // No half-close: one Close once the echo is complete.
            assert_eq!(client_actions, &vec![Action::Close]);
        }
    }
}

#[test]
fn the_seed_scenario_hello_server() {
    let mut pair = Pair::message(b"hello server");
    assert_exact_echo(&mut pair, b"hello server", 100);
    assert_eq!(
        pair.out.client_actions,
        vec![Action::Close],
        "the seed's client never half-closes: it waits for the reply"
    );
}

#[test]
fn a_large_message_through_small_water_marks_never_deadlocks() {
    let message = data(200_000);
    let client = EchoClient::message(message.clone(), ClientConfig::default());
    let mut pair = Pair::new(
        client,
        ServerConfig::default(),
        marks(1_000, 100),
        marks(3_000, 0),
    )
    .with_knobs(Knobs::fixed(700, 500), Knobs::fixed(333, 1_000));
    assert_exact_echo(&mut pair, &message, 100_000);
    assert!(pair.out.server_peak_buffer <= 1_000 + 333);
}

#[test]
fn a_stalled_server_times_the_client_out() {
    let client = EchoClient::message(
        b"ping".to_vec(),
        ClientConfig {
            idle_timeout: Some(ms(50)),
            ..ClientConfig::default()
        },
    );
    let mut pair = Pair::new(
        client,
        ServerConfig::default(),
        WaterMarks::default(),
        WaterMarks::default(),
    );
    // The server reads but its socket never takes a byte.
    pair.server_knobs.writes = Sizes::fixed(1);
    for _ in 0..5 {
        pair.step();
    }
    // Freeze the server's output from here on: it is never written again.
    let mut steps = 0;
    while pair.out.terminal.is_empty() {
        steps += 1;
        assert!(steps < 1_000);
        pair.now += ms(10);
        fire_timer(&mut pair.client, pair.now);
        for event in events(&mut pair.client) {
            if !matches!(event, ClientEvent::Echoed(_)) {
                pair.out.terminal.push(event);
            }
        }
    }
    match &pair.out.terminal[..] {
        [
            ClientEvent::Failed(EchoError::TimedOut {
                sent: 4, received, ..
            }),
        ] => assert!(*received < 4),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn an_idle_server_connection_is_reclaimed_and_counted_out() {
    let client = EchoClient::streaming(ClientConfig::default());
    let config = ServerConfig {
        idle_timeout: Some(ms(30)),
        ..ServerConfig::default()
    };
    let mut pair = Pair::new(client, config, WaterMarks::default(), WaterMarks::default());
    // The client never sends: the server gives up and closes politely.
    let out = pair.drive_bounded(1_000);
    assert_eq!(out.server_actions, vec![Action::Close]);
    assert_eq!(
        out.terminal,
        vec![ClientEvent::Failed(EchoError::Truncated {
            sent: 0,
            received: 0
        })],
        "the client sees the server close before it finished"
    );
    assert_eq!(pair.factory.open_connections(), 0);
}

fn chunk_list() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..64, 1..8)
}

pub(super) fn cases() -> u32 {
    std::env::var("CORE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Arbitrary data, arbitrary splits on both directions, arbitrary short
    /// writes, arbitrary time steps and water marks: the echo is exact, the
    /// count returns to 0, and the drive loop's invariants hold throughout
    /// (checked inside `Pair::step`: no FIN or close before the flush, the
    /// buffer bound, timers that advance).
    #[test]
    fn echo_is_exact_for_any_split_budget_and_timing(
        message in prop::collection::vec(any::<u8>(), 0..3_000),
        client_reads in chunk_list(),
        client_writes in chunk_list(),
        server_reads in chunk_list(),
        server_writes in chunk_list(),
        ticks in prop::collection::vec(0usize..20, 1..6),
        high in 1usize..200,
        low_frac in 0usize..=100,
        client_high in 1usize..200,
    ) {
        let low = high * low_frac / 100;
        let client = EchoClient::message(message.clone(), ClientConfig::default());
        let mut pair = Pair::new(
            client,
            ServerConfig { idle_timeout: Some(ms(60_000)), ..ServerConfig::default() },
            marks(high, low),
            marks(client_high, 0),
        )
        .with_knobs(
            Knobs { reads: Sizes::new(client_reads), writes: Sizes::new(client_writes) },
            Knobs { reads: Sizes::new(server_reads), writes: Sizes::new(server_writes) },
        )
        .with_ticks(ticks);
        assert_exact_echo(&mut pair, &message, 200_000);
    }

    /// The same stream fed as a streaming client, in arbitrary input pieces.
    #[test]
    fn streaming_input_in_any_pieces_echoes_exactly(
        message in prop::collection::vec(any::<u8>(), 0..2_000),
        pieces in chunk_list(),
        window in 1usize..100,
    ) {
        let client = EchoClient::streaming(ClientConfig::default());
        let mut pair = Pair::new(client, ServerConfig::default(), WaterMarks::default(), marks(window, 0));
        let mut sizes = Sizes::new(pieces);
        let mut fed = 0;
        let mut guard = 0;
        while !pair.is_done() {
            guard += 1;
            prop_assert!(guard < 100_000);
            if fed < message.len() && pair.client.wants_input() {
                let end = (fed + sizes.take()).min(message.len());
                fed += pair.client.send(&message[fed..end], pair.now).unwrap();
                prop_assert!(pair.client.buffered() <= window);
            } else if fed == message.len() {
                pair.client.finish(pair.now);
            }
            pair.step();
        }
        assert_exact_echo(&mut pair, &message, 0);
    }
}
