//! What every adapter decides the same way, whatever drives the sockets
//! (tokio's readiness, blocking threads, a completion runtime): why a
//! socket error ended a connection, how long a close lingers, how much one
//! read takes, and that a factory's events are drained after each call.
//! Runtime-free: plain functions of errors and values, used by the tokio
//! driver and server and by the blocking adapter alike.

use std::io;
use std::time::Duration;

use echo_core::{CloseReason, EchoFactory, LostReason, ServerEvent};

/// How much one read takes by default: the reference epoll server's
/// buffer. Larger reads cost memory per connection; smaller ones, calls.
pub const DEFAULT_READ_CHUNK: usize = 16 * 1024;

/// How long a close keeps reading (and discarding) what the peer still
/// sends by default, so that unread bytes do not turn the close into a
/// reset that destroys the last echoes in flight.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(2);

/// Why a socket error ended a connection; a TLS error says what TLS said
/// (an alert the peer sent, or a broken record).
#[must_use]
pub fn reason_for(error: &io::Error) -> CloseReason {
    if let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return CloseReason::Lost(match tls {
            rustls::Error::AlertReceived(alert) => LostReason::TlsAlert(u8::from(*alert)),
            _ => LostReason::Tls,
        });
    }
    CloseReason::Lost(LostReason::from_io(error.kind()))
}

/// Hands each event the factory queued to `each`, oldest first: a factory
/// queues two per connection until they are polled, so every adapter
/// drains after every call it makes.
pub fn drain_events(factory: &mut EchoFactory, mut each: impl FnMut(&ServerEvent)) {
    while let Some(event) = factory.poll_event() {
        each(&event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_is_a_reset_and_a_tls_alert_says_which() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(reason_for(&reset), CloseReason::Lost(LostReason::Reset));
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        );
        assert_eq!(
            reason_for(&alert),
            CloseReason::Lost(LostReason::TlsAlert(116))
        );
        let broken = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(reason_for(&broken), CloseReason::Lost(LostReason::Tls));
    }
}
