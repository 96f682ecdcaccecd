//! Opening connections: the timed connect, the banner, churn, and
//! `--idle`.

use super::*;

/// Opens one connection (sending the PROXY header and shaking hands, if
/// asked), timing it.
pub(super) async fn open_stream(
    config: &BenchConfig,
    shared: &Shared,
    reconnect: bool,
) -> Result<(AnyStream, Option<Arc<str>>), echo_net::ClientError> {
    let started = Instant::now();
    let connected = match &shared.connector {
        Some(connector) => connector.connect().await?,
        None => connect(&config.endpoint).await?,
    };
    shared.connect_took(
        started.elapsed(),
        connected.handshake,
        connected.resumed,
        reconnect,
    );
    let mut stream = connected.stream;
    if !config.banner {
        return Ok((stream, None));
    }
    // The banner line, a byte at a time (so no echo byte is read with it).
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let read = tokio::time::timeout(config.timeout, stream.read_exact(&mut byte)).await;
        match read {
            Ok(Ok(_)) if byte[0] == b'\n' => break,
            Ok(Ok(_)) if line.len() < echo_core::MAX_BANNER => line.push(byte[0]),
            _ => {
                return Err(echo_net::ClientError::Connect {
                    target: config.endpoint.to_string(),
                    source: std::io::Error::other("no banner line from the server"),
                });
            }
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let name: Arc<str> = Arc::from(String::from_utf8_lossy(&line).as_ref());
    shared.backend_connected(&name);
    Ok((stream, Some(name)))
}

/// Connection churn: after `every` messages, a fresh connection.
#[derive(Debug, Clone)]
pub(super) struct Churn {
    pub(super) every: u64,
    pub(super) config: Arc<BenchConfig>,
}

/// Opens `n` connections, proves each live with one echoed byte, and holds
/// them open for `hold` (for memory measurements). Returns how many opened.
///
/// # Errors
/// A connect or echo failure, as a message.
pub async fn idle(endpoint: &ClientEndpoint, n: usize, hold: Duration) -> Result<usize, String> {
    let mut open = Vec::new();
    for i in 0..n {
        let mut stream = connect(endpoint)
            .await
            .map_err(|e| format!("connection {}: {e}", i + 1))?
            .stream;
        let mut b = [0u8; 1];
        stream.write_all(b"i").await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        stream
            .read_exact(&mut b)
            .await
            .map_err(|e| format!("connection {}: no echo: {e}", i + 1))?;
        open.push(stream);
    }
    tokio::time::sleep(hold).await;
    Ok(open.len())
}
