//! The server's books checked against what the clients saw: every
//! admitted connection made once and lost once with the right count open,
//! every byte the server read echoed (exactly, where no fault can cut a
//! flush short), refusals only at the limit, and the shutdown's outcome.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::PoisonError;
use std::time::Duration;

use echo_core::{Address, CloseReason, ConnectionId, LostReason, ServerEvent};
use echo_net::{DriveConfig, ShutdownOutcome};

use super::Observed;
use crate::case::Case;
use crate::vocab::LIVENESS_BOUND;
use crate::world::{Attempt, World};

pub(crate) fn check(case: &Case, seen: &Observed<'_>) -> Result<(), String> {
    let world: &World = seen.world;
    let events = world.events.lock().unwrap_or_else(PoisonError::into_inner);
    let attempts = world.attempts.borrow();
    let clients: HashMap<SocketAddr, &Attempt> = attempts.iter().map(|a| (a.local, a)).collect();
    let exact = !case.has_faults();
    // Flushes can be cut off where the case's flush timeout is short (the
    // cases that block some clients' output, whether or not one drew a
    // stall).
    let cut_off = case
        .shutdown
        .is_some_and(|s| Duration::from_millis(s.flush_ms) < LIVENESS_BOUND);
    let denied = *world.denied.borrow();
    let mut admitted = HashSet::new();
    for instance in 0..world.servers.borrow().len() {
        let mut open: BTreeMap<ConnectionId, SocketAddr> = BTreeMap::new();
        let server_events = events.iter().filter(|(i, _, _)| *i == instance);
        // The factory starts with its first endpoint, before any connection
        // (Twisted's doStart), and stops once a finished shutdown stopped
        // serving (doStop).
        let mut kinds = server_events.clone().map(|(_, e, _)| e);
        if let Some(first) = kinds.next()
            && *first != ServerEvent::Started
        {
            return Err(format!(
                "server {instance}: first event {first:?}, not Started"
            ));
        }
        let last_instance = instance + 1 == world.servers.borrow().len();
        if last_instance
            && world.shutdown.borrow().is_some()
            && !kinds.any(|e| *e == ServerEvent::Stopped)
        {
            return Err(format!(
                "server {instance}: the shutdown ended but the factory never stopped"
            ));
        }
        let (mut made, mut refused, mut turned_away) = (0, 0, 0);
        let (mut read_total, mut clean_total) = (0u64, 0u64);
        for (_, event, stopping) in server_events {
            match event.clone() {
                ServerEvent::ConnectionMade { id, peer, .. } if *stopping => {
                    return Err(format!(
                        "server {instance}: {id} from {peer} admitted after the shutdown began"
                    ));
                }
                ServerEvent::ConnectionMade {
                    id, peer, open: n, ..
                } => {
                    let peer = ip(&peer)?;
                    if Some(peer.ip()) == denied {
                        return Err(format!(
                            "server {instance}: {id} from {peer} admitted, but the access list denies it"
                        ));
                    }
                    made += 1;
                    // Ids count up from 1 per factory, one per admission
                    // (logs and metrics name connections by them).
                    if id.get() != made {
                        return Err(format!(
                            "server {instance}: admission {made} got id {}, not {made}",
                            id.get()
                        ));
                    }
                    if open.insert(id, peer).is_some() {
                        return Err(format!("server {instance}: connection {id} admitted twice"));
                    }
                    if n != open.len() {
                        return Err(format!(
                            "server {instance}: {id} made with open={n}, but {} are open",
                            open.len()
                        ));
                    }
                    admitted.insert(peer);
                }
                ServerEvent::ConnectionRefused { open: n, limit, .. }
                    if case.server.max_connections != Some(limit)
                        || n != limit
                        || n != open.len() =>
                {
                    return Err(format!(
                        "server {instance}: refused with open={n} limit={limit}, \
                             but {} are open and the limit is {:?}",
                        open.len(),
                        case.server.max_connections
                    ));
                }
                ServerEvent::ConnectionRefused { .. } => refused += 1,
                ServerEvent::ConnectionDenied { peer } => {
                    let peer = ip(&peer)?;
                    if Some(peer.ip()) != denied {
                        return Err(format!(
                            "server {instance}: {peer} denied, but the access list admits it"
                        ));
                    }
                    turned_away += 1;
                    world.shared.stats.borrow_mut().denied += 1;
                }
                ServerEvent::ConnectionLost {
                    id,
                    peer,
                    received: echoed,
                    open: n,
                    reason,
                    ..
                } => {
                    read_total += echoed;
                    clean_total += u64::from(reason == CloseReason::Done);
                    let peer = ip(&peer)?;
                    if open.remove(&id) != Some(peer) {
                        return Err(format!(
                            "server {instance}: {id} from {peer} lost, but it was not open"
                        ));
                    }
                    if n != open.len() {
                        return Err(format!(
                            "server {instance}: {id} lost with open={n}, but {} are open",
                            open.len()
                        ));
                    }
                    let Some(client) = clients.get(&peer) else {
                        return Err(format!("server {instance}: {id} from {peer}, no client's"));
                    };
                    let (label, len, got) = (&client.label, client.len as u64, client.received);
                    let got = got as u64;
                    if echoed > len || got > echoed || (client.done && echoed != len) {
                        return Err(format!(
                            "{label}: sent {len}, the server read {echoed}, {got} came back (done: {})",
                            client.done
                        ));
                    }
                    // Where flushes are cut off, a reset loses what was in
                    // flight, as it must: any client's, once its flush
                    // outlasts the timeout.
                    let exact = exact && !cut_off;
                    if exact && got != echoed {
                        return Err(format!(
                            "{label}: the server read {echoed} bytes but only {got} came back"
                        ));
                    }
                    // Without faults a connection ends cleanly, or (once a
                    // shutdown began, and only then) as shut down; the idle
                    // timeout may end it only where some client's output
                    // stalls for about as long as it (pauses under half
                    // of it never leave it idle: it keeps writing).
                    let timed_out = CloseReason::Lost(LostReason::TimedOut);
                    let shut_down = CloseReason::Lost(LostReason::ShutDown);
                    let idle = case.server.idle_ms.unwrap_or(u64::MAX);
                    let stalls = case
                        .hosts
                        .iter()
                        .flatten()
                        .any(|p| p.stall.is_some_and(|s| s.ms >= idle / 2));
                    // (A crash cancels the server's tasks, which also reads
                    // as shut down: only fault-free cases can tell.)
                    if exact && reason == shut_down && !*stopping {
                        return Err(format!("{label}: {reason} before any shutdown began"));
                    }
                    if exact
                        && reason != CloseReason::Done
                        && !(reason == timed_out && stalls)
                        && reason != shut_down
                    {
                        return Err(format!("{label}: ended without a fault: {reason}"));
                    }
                }
                _ => {}
            }
        }
        if let Some((id, peer)) = open.first_key_value() {
            return Err(format!(
                "server {instance}: {id} from {peer} was never reported lost"
            ));
        }
        // The stats line's counters agree with the events: every byte a
        // connection read was counted in, and every loss by its reason.
        let traffic = world.servers.borrow()[instance].traffic();
        // Where nothing can cut an echo short, every byte in went out.
        let all_out = !exact || cut_off || traffic.bytes_out == read_total;
        if traffic.bytes_in != read_total || traffic.lost.clean != clean_total || !all_out {
            return Err(format!(
                "server {instance}: the counters say {traffic:?}, the events say {read_total} bytes in and {clean_total} clean closes"
            ));
        }
        if traffic.denied != turned_away {
            return Err(format!(
                "server {instance}: the counters say {} denied, its events say {turned_away}",
                traffic.denied
            ));
        }
        let totals = world.servers.borrow()[instance].totals();
        if totals != (made, refused) {
            return Err(format!(
                "server {instance}: totals say {totals:?} (accepted, refused), its events say ({made}, {refused})"
            ));
        }
    }
    // (An empty echo cannot tell a refusal from an admission: both end in a
    // clean close with nothing back.)
    let unadmitted = |a: &&Attempt| a.done && a.len > 0 && !admitted.contains(&a.local);
    if let Some(a) = attempts.iter().find(unadmitted) {
        return Err(format!(
            "{}: done, but the server never admitted it",
            a.label
        ));
    }
    world.shared.stats.borrow_mut().cut_short = attempts
        .iter()
        .filter(|a| !a.done && admitted.contains(&a.local))
        .count() as u64;
    if let Some(plan) = case.shutdown {
        // Grace, then the flush timeout, then the lingering close that
        // follows a flush, then a round trip: a flush that is never cut off
        // (a peer that stopped reading) would hold the shutdown far longer.
        let linger = DriveConfig::default().linger;
        let bound = Duration::from_millis(
            plan.grace_ms + plan.flush_ms + 2 * case.network.max_latency_ms + 100,
        ) + linger;
        if let Some(took) = *world.shutdown_took.borrow()
            && took > bound
        {
            return Err(format!(
                "the shutdown took {took:?}, more than grace {}ms + flush timeout {}ms + linger {linger:?} + a round trip",
                plan.grace_ms, plan.flush_ms
            ));
        }
        match *world.shutdown.borrow() {
            None => return Err("the graceful shutdown never finished".into()),
            // (With faults an admitted echo may end early, by a partition
            // and the idle timeout, before a shutdown that then drains.)
            Some(ShutdownOutcome::Drained) if !case.has_faults() => {
                let unfinished = attempts
                    .iter()
                    .find(|a| !a.done && admitted.contains(&a.local));
                if let Some(a) = unfinished {
                    return Err(format!("{}: shutdown drained, but it is not done", a.label));
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A simulated peer's IP address (every simulated socket has one).
fn ip(peer: &Address) -> Result<SocketAddr, String> {
    peer.ip()
        .ok_or_else(|| format!("a simulated peer without an IP address: {peer}"))
}
