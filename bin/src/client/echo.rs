//! The default mode (a message per connection) and `--stdin`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use echo_core::{ClientConfig, EchoClient};
use echo_net::{
    AnyStream, ClientError, ClientOptions, Connected, Connector, Pipe, echo_message_from,
    run as drive,
};

use super::Args;
use super::args::DEFAULT_CONCURRENCY;
use crate::{complain, say};

/// First pause before retrying a connect; doubles up to `MAX_RETRY_PAUSE`.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// Runs the message or --stdin mode: exit 0 when every echo came back.
pub(super) fn run(args: Args) -> std::process::ExitCode {
    super::block_on(echo_all(args))
}

/// Runs the message or --stdin mode; true when every echo succeeded.
async fn echo_all(args: Args) -> bool {
    let options = ClientOptions {
        config: ClientConfig {
            idle_timeout: Some(args.timeout),
            half_close: args.half_close,
            banner: args.banner,
            ..ClientConfig::default()
        },
        ..ClientOptions::default()
    };
    let connector = match args.tls.connector(&args.connect, None) {
        Ok(connector) => Arc::new(connector.send_proxy(args.proxy.header())),
        Err(e) => {
            complain(format!("echo-client: {e}"));
            return false;
        }
    };
    if args.stdin {
        return match stream_stdin(&connector, args.retries, options).await {
            Ok(()) => true,
            Err(e) => {
                complain(format!("echo-client: {e}"));
                false
            }
        };
    }
    let message = match args.size {
        Some(size) => Bytes::from(generated(size)),
        None => Bytes::from(args.message.clone().into_bytes()),
    };
    let concurrency = args
        .concurrency
        .unwrap_or(DEFAULT_CONCURRENCY)
        .min(args.connections);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 1;
    let mut ok = true;
    // At most `concurrency` connections at once: memory and descriptors
    // stay bounded whatever -c says.
    loop {
        while next <= args.connections && tasks.len() < concurrency {
            let (connector, message) = (Arc::clone(&connector), message.clone());
            let (n, retries) = (next, args.retries);
            tasks.spawn(async move {
                let started = Instant::now();
                let result = async {
                    let connected = connect_with_retries(&connector, retries).await?;
                    echo_message_from(connected, message, options)
                        .await
                        .map_err(Failed::from)
                }
                .await;
                (n, result, started.elapsed())
            });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined {
            Ok((n, Ok((echo, banner)), took)) => {
                tracing::info!(connection = n, bytes = echo.len(), ?took, "echo complete");
                // "from server": the back end's name when it sent a banner.
                let from = banner.map_or_else(
                    || "server".to_owned(),
                    |b| String::from_utf8_lossy(&b).into_owned(),
                );
                let line = if args.size.is_some() {
                    say(format_args!("> from {from}: {} bytes", echo.len()))
                } else {
                    say(format_args!(
                        "> from {from}: {}",
                        String::from_utf8_lossy(&echo)
                    ))
                };
                if !line && ok {
                    complain("echo-client: cannot write to standard output");
                    ok = false;
                }
            }
            Ok((n, Err(e), _)) => {
                complain(format!("echo-client: connection {n}: {e}"));
                ok = false;
            }
            Err(e) => {
                complain(format!("echo-client: a connection task failed: {e}"));
                ok = false;
            }
        }
    }
    ok
}

/// `size` bytes of varied content (so a server that mixes up bytes shows).
pub(super) fn generated(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// A failure, with how many connect attempts it took when there were
/// retries.
#[derive(Debug)]
struct Failed {
    error: ClientError,
    attempts: u32,
}

impl From<ClientError> for Failed {
    fn from(error: ClientError) -> Self {
        Self { error, attempts: 1 }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)?;
        if self.attempts > 1 {
            write!(f, " (gave up after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

async fn stream_stdin(
    connector: &Connector,
    retries: u32,
    options: ClientOptions,
) -> Result<(), Failed> {
    let connected = connect_with_retries(connector, retries).await?;
    let client = EchoClient::streaming(options.config);
    let mut pipe = Pipe::new(Some(tokio::io::stdin()), tokio::io::stdout());
    let summary = drive(connected, client, &mut pipe, options).await?;
    if let Some(name) = pipe.banner() {
        tracing::info!(backend = %String::from_utf8_lossy(name), "banner");
    }
    tracing::info!(
        sent = summary.sent,
        received = summary.received,
        "echo complete"
    );
    Ok(())
}

/// Connects (a TLS handshake and a PROXY header included), retrying
/// refused or timed-out attempts with bounded back-off; a failed TLS
/// handshake is not retried.
async fn connect_with_retries(
    connector: &Connector,
    retries: u32,
) -> Result<Connected<AnyStream>, Failed> {
    let mut pause = FIRST_RETRY_PAUSE;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match connector.connect().await {
            Ok(connected) => return Ok(connected),
            Err(
                e @ (ClientError::Refused { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::Connect { .. }),
            ) if attempt <= retries => {
                tracing::info!(error = %e, attempt, retry_in = ?pause, "connect failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
            Err(error) => {
                return Err(Failed {
                    error,
                    attempts: attempt,
                });
            }
        }
    }
}
