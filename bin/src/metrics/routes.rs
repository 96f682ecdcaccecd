//! What the metrics server answers, by method and path: a pure function of
//! the request line, its `Accept` header and the server's state, so every
//! answer is tested without a socket.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Response, StatusCode};

use super::{Exposition, Format};

/// Whether the server is alive and whether it should get new connections.
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Ready: the echo listeners are bound before the metrics are served.
    #[must_use]
    pub fn new() -> Self {
        Self {
            ready: AtomicBool::new(true),
        }
    }

    /// A graceful shutdown began: `/readyz` answers 503 from now on, so a
    /// balancer stops sending new connections while open ones finish.
    pub fn shutting_down(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// The answer to `method path` with `accept`: `GET /metrics` (Prometheus
/// text, or OpenMetrics when asked), `GET /healthz` (200 while the process
/// answers), `GET /readyz` (200, then 503 once a shutdown began); another
/// path 404, another method on these paths 405. The query is ignored.
#[must_use]
pub fn respond(
    method: &Method,
    path: &str,
    accept: Option<&str>,
    exposition: &Exposition,
    health: &Health,
) -> Response<Full<Bytes>> {
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        );
    }
    if method != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    match path {
        "/metrics" => {
            let format = Format::from_accept(accept);
            let mut response = Response::new(Full::new(Bytes::from(exposition.render(format))));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            response
        }
        "/healthz" => plain(StatusCode::OK, "ok\n"),
        _ if health.is_ready() => plain(StatusCode::OK, "ready\n"),
        _ => plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use echo_net::{HandshakeTimes, Losses, Traffic};

    fn exposition() -> Exposition {
        Exposition::new(|| Traffic {
            open: 2,
            accepted: 7,
            refused: 1,
            denied: 3,
            bytes_in: 640,
            bytes_out: 512,
            lost: Losses {
                clean: 4,
                reset: 1,
                ..Losses::default()
            },
            bad_headers: 5,
            proxy_refused: [0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0],
            tls_failures: 6,
            tls_failed: [2, 0, 4, 0, 0, 0, 0, 0],
            tls_handshakes: 8,
            tls_resumed: 3,
            handshake_times: HandshakeTimes {
                counts: [3, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                sum_micros: 6_500_000,
            },
            health_checks: 4,
            cut_offs: [0, 2, 0],
            udp: echo_core::UdpStats {
                received: 9,
                echoed: 7,
                echoed_bytes: 700,
                rate_limited: 2,
                ..echo_core::UdpStats::default()
            },
        })
    }

    fn get(path: &str, health: &Health) -> (StatusCode, String) {
        let response = respond(&Method::GET, path, None, &exposition(), health);
        (response.status(), body(response))
    }

    fn body(response: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let collected = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(response.into_body().collect());
        let Ok(collected) = collected;
        String::from_utf8(collected.to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn metrics_are_the_traffic_counters_under_prometheus_names() {
        let (status, text) = get("/metrics", &Health::new());
        assert_eq!(status, StatusCode::OK);
        for line in [
            "echo_connections_open 2",
            "echo_connections_accepted_total 7",
            "echo_connections_refused_total 1",
            "echo_connections_denied_total 3",
            "echo_received_bytes_total 640",
            "echo_sent_bytes_total 512",
            "echo_tls_handshakes_total{kind=\"full\"} 5",
            "echo_tls_handshakes_total{kind=\"resumed\"} 3",
            "echo_tls_handshake_failures_total{reason=\"timed_out\"} 2",
            "echo_tls_handshake_failures_total{reason=\"not_tls\"} 4",
            "echo_tls_handshake_failures_total{reason=\"certificate\"} 0",
            "echo_tls_handshake_duration_seconds_bucket{le=\"0.0005\"} 3",
            "echo_tls_handshake_duration_seconds_bucket{le=\"0.0025\"} 7",
            "echo_tls_handshake_duration_seconds_bucket{le=\"5\"} 7",
            "echo_tls_handshake_duration_seconds_bucket{le=\"+Inf\"} 8",
            "echo_tls_handshake_duration_seconds_count 8",
            "echo_tls_handshake_duration_seconds_sum 6.5",
            "echo_proxy_headers_rejected_total{reason=\"line_too_long\"} 2",
            "echo_proxy_headers_rejected_total{reason=\"timed_out\"} 3",
            "echo_proxy_headers_rejected_total{reason=\"missing\"} 0",
            "echo_fault_cutoffs_total{action=\"reset\"} 2",
            "echo_fault_cutoffs_total{action=\"close\"} 0",
            "# TYPE echo_tls_handshake_duration_seconds histogram",
            "echo_proxy_health_checks_total 4",
            "echo_connections_ended_total{reason=\"clean\"} 4",
            "echo_connections_ended_total{reason=\"reset\"} 1",
            "echo_connections_ended_total{reason=\"io_error\"} 0",
            "echo_udp_datagrams_received_total 9",
            "echo_udp_datagrams_echoed_total 7",
            "echo_udp_echoed_bytes_total 700",
            "echo_udp_datagrams_dropped_total{reason=\"rate_limited\"} 2",
            "echo_udp_datagrams_dropped_total{reason=\"not_sent\"} 0",
            "# TYPE echo_connections_open gauge",
            "# TYPE echo_received_bytes_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn openmetrics_is_served_when_the_scraper_asks_for_it() {
        let accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        let response = respond(
            &Method::GET,
            "/metrics",
            Some(accept),
            &exposition(),
            &Health::new(),
        );
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let text = body(response);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# UNIT echo_received_bytes bytes"), "{text}");
        // Not asked for (or refused with q=0): the Prometheus text format.
        for accept in [
            None,
            Some("text/plain"),
            Some("application/openmetrics-text;q=0"),
        ] {
            let response = respond(
                &Method::GET,
                "/metrics",
                accept,
                &exposition(),
                &Health::new(),
            );
            assert_eq!(
                response.headers()[CONTENT_TYPE],
                "text/plain; version=0.0.4; charset=utf-8",
                "{accept:?}"
            );
            assert!(!body(response).contains("# EOF"));
        }
    }

    #[test]
    fn readiness_turns_503_when_a_shutdown_begins_while_health_stays_200() {
        let health = Health::new();
        assert_eq!(get("/readyz", &health).0, StatusCode::OK);
        assert_eq!(get("/healthz", &health).0, StatusCode::OK);
        health.shutting_down();
        assert_eq!(get("/readyz", &health).0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get("/healthz", &health).0, StatusCode::OK);
        assert_eq!(get("/metrics", &health).0, StatusCode::OK);
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405() {
        let health = Health::new();
        for path in ["/", "/metrics/", "/favicon.ico", "/readyz/x", "*"] {
            assert_eq!(get(path, &health).0, StatusCode::NOT_FOUND, "{path}");
        }
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::HEAD] {
            let response = respond(&method, "/metrics", None, &exposition(), &health);
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method}"
            );
            assert_eq!(response.headers()[ALLOW], "GET");
        }
    }
}
