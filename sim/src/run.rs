//! Runs one [`Case`]: the real `echo-net` server on a server host, real
//! `echo-net` clients on client hosts, faults applied between steps, and the
//! invariants checked throughout and at the end.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use echo_core::{ClientConfig, ServerConfig, WaterMarks};
use echo_net::{AccessList, ClientOptions, DriveConfig, EchoServer, IpNet, ServerOptions};

use crate::case::{Access, Case, Fault};
use crate::client::connection;
use crate::io::{LocalSpawner, SimListener};
use crate::vocab::{LIVENESS_BOUND, PORT, SERVER, client_host};
use crate::world::{Report, Shared, World};

/// After the clients are done, the server must be back to 0 open
/// connections within its idle timeout plus this.
const DRAIN_SLACK: Duration = Duration::from_secs(10);

/// Runs `case` to the end and reports.
#[must_use]
pub fn run_case(case: &Case) -> Report {
    let world = World {
        shared: Shared::default(),
        servers: Rc::default(),
        largest_reads: Rc::default(),
        running: Rc::new(RefCell::new(case.connections())),
        events: Arc::default(),
        stopping: Arc::default(),
        attempts: Rc::default(),
        shutdown: Rc::default(),
        shutdown_took: Rc::default(),
        denied: Rc::default(),
        open_at_shutdown: Rc::default(),
        accept_failures: Rc::default(),
        listening: Rc::default(),
    };
    let _ = crate::io::take_fired();
    let (result, log, table) = crate::logs::capture(|| simulate(case, &world));
    world.shared.coverage.borrow_mut().add(&table);
    world
        .shared
        .coverage
        .borrow_mut()
        .add(&crate::io::take_fired());
    let result = result.and_then(|()| {
        crate::invariants::after_run(
            case,
            &crate::invariants::Observed {
                world: &world,
                log: &log,
            },
        )
    });
    world.shared.report(result)
}

/// The fault points of a case's sockets, from its seed (so that every
/// earlier draw, and each committed seed's case, stays what it was): in
/// three cases of four, 1 to 30 per mille of reads and writes hiccup.
fn hiccups(knobs: crate::io::IoKnobs, seed: u64, tls: bool) -> crate::io::IoKnobs {
    let draw = crate::vocab::mix(seed ^ 0x6869_6363_7570);
    crate::io::IoKnobs {
        hiccups: if draw.is_multiple_of(4) {
            0
        } else {
            (1 + (draw >> 8) % 30) as u16
        },
        hiccup_errors: !tls,
        ..knobs
    }
}

/// `usual`, or in a third of the cases (by the seed) any budget from 1
/// byte to 64 KiB.
fn read_budget(seed: u64, usual: usize) -> usize {
    let draw = crate::vocab::mix(seed ^ 0x6275_6467_6574);
    if draw.is_multiple_of(3) {
        crate::io::fired("driver: a random read budget");
        1 + ((draw >> 8) % 65_536) as usize
    } else {
        usual
    }
}

fn server_options(case: &Case) -> ServerOptions {
    ServerOptions {
        config: ServerConfig {
            max_connections: case.server.max_connections,
            idle_timeout: case.server.idle_ms.map(Duration::from_millis),
            faults: case.misbehave,
            banner: None,
        },
        marks: WaterMarks::new(case.server.high, case.server.low).expect("valid marks"),
        drive: DriveConfig {
            read_chunk: case.server.read_chunk,
            // Two reads a wake, not 64 KiB: a busy connection yields to
            // the others in nearly every case, not only past 64 KiB. In a
            // third of the cases, any budget from 1 byte to 64 KiB.
            read_budget: read_budget(case.seed, 2 * case.server.read_chunk),
            // Without a shutdown plan, long enough for any flush the case
            // can need; with one, the plan's (clients that keep reading
            // finish in it; one whose output blocks is cut off by it).
            flush_timeout: case
                .shutdown
                .map_or(LIVENESS_BOUND, |s| Duration::from_millis(s.flush_ms)),
            ..DriveConfig::default()
        },
        // The stats counters run too, and are checked against the events.
        count_traffic: true,
    }
}

/// The list that turns host `access.denied` away, by name resolved in the
/// simulation (turmoil hands out addresses as hosts are made).
fn access_list(access: Access, hosts: usize, world: &World) -> AccessList {
    let net = |h: usize| IpNet::from(turmoil::lookup(client_host(h)));
    let denied = turmoil::lookup(client_host(access.denied));
    *world.denied.borrow_mut() = Some(denied);
    if access.by_allow {
        AccessList {
            allow: (0..hosts)
                .filter(|&h| h != access.denied)
                .map(net)
                .collect(),
            deny: Vec::new(),
        }
    } else {
        AccessList {
            allow: Vec::new(),
            deny: vec![IpNet::from(denied)],
        }
    }
}

fn client_options(case: &Case) -> ClientOptions {
    ClientOptions {
        config: ClientConfig {
            idle_timeout: Some(Duration::from_millis(case.client.idle_ms)),
            max_undelivered: case.client.max_undelivered,
            half_close: case.client.half_close,
            ..ClientConfig::default()
        },
        marks: WaterMarks::new(case.client.high, 0).expect("valid marks"),
        drive: DriveConfig {
            read_chunk: case.client.read_chunk,
            read_budget: read_budget(case.seed.rotate_left(29), 2 * case.client.read_chunk),
            ..ClientOptions::default().drive
        },
    }
}

fn simulate(case: &Case, world: &World) -> Result<(), String> {
    let latency = (case.network.min_latency_ms, case.network.max_latency_ms);
    let duration = Duration::from_millis(case.heal_at_ms) + LIVENESS_BOUND;
    let mut builder = crate::vocab::network(case.seed, latency, duration);
    builder.tcp_capacity(case.network.tcp_capacity);
    if case.network.random_order {
        builder.enable_random_order();
    }
    let mut sim = builder.build();

    let options = server_options(case);
    // A connection reads its budget in whole reads and yields once it is
    // spent: one read more at most. (Over TLS the socket's reads are the
    // record layer's, not the driver's.)
    let quantum =
        (!case.tls).then(|| (options.drive.read_budget + options.drive.read_chunk - 1) as u64);
    let server_io = hiccups(case.server.io, case.seed, case.tls);
    let (seed, shutdown) = (case.seed, case.shutdown);
    let (access, hosts) = (case.access, case.hosts.len());
    let (tls_server, tls_client) = crate::tls::pair();
    let tls_server = case.tls.then_some(tls_server);
    let tls_client = case.tls.then_some(tls_client);
    let host_world = world.clone();
    sim.host(SERVER, move || {
        let world = host_world.clone();
        let tls = tls_server.clone();
        async move {
            world.shared.event("server starts".into());
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
            world.listening.set(true);
            let server = EchoServer::new(options);
            if let Some(access) = access {
                server.restrict(access_list(access, hosts, &world));
            }
            let largest_read = Arc::new(AtomicUsize::new(0));
            let instance = {
                let mut servers = world.servers.borrow_mut();
                servers.push(server.clone());
                world
                    .largest_reads
                    .borrow_mut()
                    .push(Arc::clone(&largest_read));
                servers.len() - 1
            };
            let (events, stopping) = (Arc::clone(&world.events), Arc::clone(&world.stopping));
            server.observe(move |e| {
                let mut events = events.lock().unwrap_or_else(PoisonError::into_inner);
                events.push((instance, e.clone(), stopping.load(Ordering::Relaxed)));
            });
            let spawner = LocalSpawner {
                panics: Rc::clone(&world.shared.panics),
                quantum,
            };
            let listener = SimListener::new(listener, server_io, seed)
                .measure_reads(largest_read)
                .accept_errors(Rc::clone(&world.accept_failures));
            let serve: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = match tls {
                Some(tls) => Box::pin(server.serve_tls(listener, spawner, tls, false)),
                None => Box::pin(server.serve(listener, spawner)),
            };
            let Some(plan) = shutdown else {
                serve.await;
                return Ok(());
            };
            let stop = async {
                tokio::time::sleep(Duration::from_millis(plan.at_ms)).await;
                world.shared.event("shutdown starts".into());
                world.stopping.store(true, Ordering::Relaxed);
                let started = tokio::time::Instant::now();
                // Read in the same poll as the shutdown's own count.
                *world.open_at_shutdown.borrow_mut() = Some(server.open_connections());
                let outcome = server.shutdown(Duration::from_millis(plan.grace_ms)).await;
                world.shared.event(format!("shutdown ends: {outcome:?}"));
                *world.shutdown.borrow_mut() = Some(outcome);
                *world.shutdown_took.borrow_mut() = Some(started.elapsed());
            };
            tokio::join!(serve, stop);
            world.shared.event("server stops serving".into());
            Ok(())
        }
    });

    let options = client_options(case);
    for (h, conns) in case.hosts.iter().enumerate() {
        let world = world.clone();
        let conns = conns.clone();
        let io = hiccups(case.client.io, case.seed.rotate_left(17), case.tls);
        let (faulty, one_shot) = (case.has_faults(), case.shutdown.is_some());
        let misbehave = case.misbehave;
        let denied = case.access.is_some_and(|a| a.denied == h);
        let tls = tls_client.clone();
        sim.client(client_host(h), async move {
            let mut tasks = Vec::new();
            for (c, plan) in conns.into_iter().enumerate() {
                let label = format!("h{h}c{c}");
                let seed = seed ^ ((h as u64) << 32 | c as u64);
                let world2 = world.clone();
                let link = (io, tls.clone());
                let outcome = Rc::new(RefCell::new(None));
                let slot = Rc::clone(&outcome);
                let task = async move {
                    let result = connection(
                        label,
                        plan,
                        options,
                        link,
                        seed,
                        (faulty, one_shot, denied, misbehave),
                        &world2,
                    )
                    .await;
                    *slot.borrow_mut() = Some(result);
                };
                tasks.push((world.shared.spawn(task), outcome));
            }
            for (task, outcome) in tasks {
                let _ = task.await;
                match outcome.borrow_mut().take() {
                    Some(Ok(())) => {}
                    Some(Err(violation)) => return Err(violation.into()),
                    None => return Err("a client connection task panicked".into()),
                }
            }
            Ok(())
        });
    }

    let mut next = 0;
    let mut healed = false;
    let mut server_down = false;
    loop {
        let elapsed = sim.elapsed();
        while !healed
            && next < case.faults.len()
            && elapsed >= Duration::from_millis(case.faults[next].0)
        {
            let fault = case.faults[next].1;
            next += 1;
            let host = |i: usize| client_host(i % case.hosts.len());
            match fault {
                Fault::Partition(i) => sim.partition(SERVER, host(i)),
                Fault::PartitionToServer(i) => sim.partition_oneway(host(i), SERVER),
                Fault::PartitionFromServer(i) => sim.partition_oneway(SERVER, host(i)),
                Fault::Repair(i) => repair(&sim, &host(i)),
                Fault::Hold(i) => sim.hold(SERVER, host(i)),
                Fault::Release(i) => sim.release(SERVER, host(i)),
                Fault::CrashServer if !server_down => {
                    sim.crash(SERVER);
                    server_down = true;
                    world.shared.stats.borrow_mut().crashes += 1;
                }
                Fault::CrashServer => continue,
                Fault::BounceServer => {
                    sim.bounce(SERVER);
                    server_down = false;
                }
            }
            world
                .shared
                .trace
                .borrow_mut()
                .push(format!("{:>7}ms fault {fault:?}", elapsed.as_millis()));
            world
                .shared
                .hit(format!("fault {}", crate::coverage::variant(&fault)));
            if *world.running.borrow() > 0 {
                world.shared.stats.borrow_mut().faults_mid_traffic += 1;
            }
        }
        if !healed && elapsed >= Duration::from_millis(case.heal_at_ms) {
            for h in 0..case.hosts.len() {
                let host = client_host(h);
                sim.release(SERVER, host.as_str());
                repair(&sim, &host);
            }
            if server_down {
                sim.bounce(SERVER);
                server_down = false;
            }
            world
                .shared
                .trace
                .borrow_mut()
                .push(format!("{:>7}ms healed", elapsed.as_millis()));
            healed = true;
        }
        let finished = sim.step().map_err(|e| format!("simulation failed: {e}"))?;
        crate::invariants::every_step(case, world)?;
        if finished {
            break;
        }
    }

    // The clients are gone: the server's count must return to 0 (idle
    // timeouts reclaim connections that a partition wedged).
    let idle = case
        .server
        .idle_ms
        .map_or(Duration::ZERO, Duration::from_millis);
    // A graceful shutdown that is still to come must also finish.
    let stopping = case.shutdown.map_or(Duration::ZERO, |s| {
        Duration::from_millis(s.at_ms + s.grace_ms)
    });
    let deadline = sim.elapsed() + stopping + idle + DRAIN_SLACK;
    let shutting_down =
        |world: &World| case.shutdown.is_some() && world.shutdown.borrow().is_none();
    let open = |world: &World| {
        world
            .servers
            .borrow()
            .iter()
            .map(EchoServer::open_connections)
            .sum::<usize>()
    };
    while open(world) > 0 || shutting_down(world) {
        if sim.elapsed() > deadline {
            return Err(format!(
                "{} server connections still open {idle:?} + {DRAIN_SLACK:?} after the clients left",
                open(world)
            ));
        }
        sim.step()
            .map_err(|e| format!("simulation failed while draining: {e}"))?;
        crate::invariants::every_step(case, world)?;
    }
    world.shared.event(format!(
        "end: servers={} open=0",
        world.servers.borrow().len()
    ));
    Ok(())
}

/// Heals every partition between the server and `host`, both ways and
/// one-way (a one-way partition needs its own repair).
fn repair(sim: &turmoil::Sim<'_>, host: &str) {
    sim.repair(SERVER, host);
    sim.repair_oneway(SERVER, host);
    sim.repair_oneway(host, SERVER);
}
