//! `echo-client udp`: numbered datagrams, every reply accounted for.

use bytes::Bytes;
use echo_core::{
    ClientEndpoint, UDP_CLIENT_HEADER, UdpClientConfig, UdpClientEvent, UdpEchoClient, UdpReport,
};
use echo_net::{connect_udp, now, udp_echo};
use std::time::Duration;

use super::args::{datagram_count, udp_endpoint};
use super::echo::generated;
use super::usage_error;
use crate::{complain, datagram_size, duration, say};

#[derive(Debug, clap::Args)]
pub(crate) struct UdpArgs {
    /// Where to send, as a Twisted endpoint string
    #[arg(env = "ECHO_UDP_CONNECT", long, value_name = "DESC", default_value = "udp:localhost:8888", value_parser = udp_endpoint)]
    pub(crate) connect: ClientEndpoint,

    /// Datagrams to send
    #[arg(env = "ECHO_UDP_COUNT", short = 'c', long, visible_short_alias = 'n', value_name = "N", default_value = "10", value_parser = datagram_count)]
    pub(crate) count: u64,

    /// The text each datagram carries (after the client's 16-byte header)
    #[arg(
        env = "ECHO_UDP_MESSAGE",
        short,
        long,
        value_name = "TEXT",
        default_value = "hello server"
    )]
    pub(crate) message: String,

    /// Send SIZE-byte datagrams (16 to 65507) of generated content instead
    /// of the message
    #[arg(env = "ECHO_UDP_SIZE", short, long, value_name = "BYTES", conflicts_with = "message", value_parser = datagram_size)]
    pub(crate) size: Option<usize>,

    /// Pause between datagrams
    #[arg(env = "ECHO_UDP_INTERVAL", long, value_name = "DURATION", default_value = "10ms", value_parser = duration)]
    pub(crate) interval: Duration,

    /// After the last datagram, wait this long for replies before counting
    /// the missing ones lost
    #[arg(env = "ECHO_UDP_WAIT", long, value_name = "DURATION", default_value = "2s", value_parser = duration)]
    pub(crate) wait: Duration,
}

/// Runs `echo-client udp`: exit 0 when every datagram came back unchanged.
pub(super) fn run(args: &UdpArgs) -> std::process::ExitCode {
    super::block_on(async move {
        match exchange(args).await {
            Ok(ok) => ok,
            Err(e) => {
                complain(format!("echo-client: {e}"));
                false
            }
        }
    })
}

/// Sends and accounts; true when every datagram came back unchanged.
async fn exchange(args: &UdpArgs) -> Result<bool, String> {
    let body = match args.size {
        None => Bytes::from(args.message.clone().into_bytes()),
        Some(size) => Bytes::from(generated(size.saturating_sub(UDP_CLIENT_HEADER))),
    };
    let config = UdpClientConfig {
        count: args.count,
        interval: args.interval,
        wait: args.wait,
    };
    let client = match UdpEchoClient::new(body, config, now()) {
        Ok(client) => client,
        // A message that cannot fit a datagram is a usage error.
        Err(e) => {
            usage_error(Some("udp"), clap::error::ErrorKind::ValueValidation, e);
        }
    };
    let (socket, server) = connect_udp(&args.connect)
        .await
        .map_err(|e| e.to_string())?;
    let text = args.size.is_none();
    let mut printing = true;
    let report = udp_echo(&socket, server, client, |event| match event {
        UdpClientEvent::Reply { body, .. } if printing => {
            printing = if text {
                say(format_args!(
                    "> from server: {}",
                    String::from_utf8_lossy(body)
                ))
            } else {
                say(format_args!(
                    "> from server: {} bytes",
                    body.len() + UDP_CLIENT_HEADER
                ))
            };
        }
        UdpClientEvent::Duplicate { seq } => tracing::warn!(seq, "duplicate datagram"),
        UdpClientEvent::Corrupt { len } => tracing::warn!(len, "corrupted datagram"),
        _ => {}
    })
    .await
    .map_err(|e| e.to_string())?;
    complain(udp_summary(&report));
    if !printing {
        return Err("cannot write to standard output".into());
    }
    Ok(report.is_complete())
}

/// The one-line account of a UDP run, for standard error.
fn udp_summary(r: &UdpReport) -> String {
    let rtt = match (r.min_rtt, r.max_rtt) {
        (Some(min), Some(max)) => format!("; round trip {min:.1?} to {max:.1?}"),
        _ => String::new(),
    };
    format!(
        "udp: {} sent, {} back, {} lost, {} duplicated, {} reordered, {} corrupted{rtt}",
        r.sent, r.received, r.lost, r.duplicates, r.reordered, r.corrupt
    )
}
