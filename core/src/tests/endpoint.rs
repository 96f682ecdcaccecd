//! Endpoint strings: Twisted's test vectors (`internet/test/test_endpoints.py`)
//! plus our own forms and errors.

#[allow(unused_imports)]
use super::prelude::*;

use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;

use crate::{
    ClientEndpoint, ClientTls, DEFAULT_BACKLOG, EndpointError, Role, ServerEndpoint, ServerTls,
    TlsMethod,
};

fn server(s: &str) -> ServerEndpoint {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn client(s: &str) -> ClientEndpoint {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp_client(host: &str, port: u16, timeout: u64, bind: Option<&str>) -> ClientEndpoint {
    ClientEndpoint::Tcp {
        host: host.into(),
        port,
        timeout: Duration::from_secs(timeout),
        bind_address: bind.map(ip),
    }
}

#[test]
fn twisted_server_vectors() {
    // test_tcp
    assert_eq!(
        server("tcp:1234:backlog=12:interface=10.0.0.1"),
        ServerEndpoint::Tcp {
            port: 1234,
            interface: ip("10.0.0.1"),
            backlog: 12
        }
    );
    // test_unix
    assert_eq!(
        server("unix:/var/foo/bar:backlog=7:mode=0123:lockfile=1"),
        ServerEndpoint::Unix {
            path: "/var/foo/bar".into(),
            mode: 0o123,
            backlog: 7,
            lockfile: true
        }
    );
    // defaults (our backlog default is 1024, not Twisted's 50)
    assert_eq!(DEFAULT_BACKLOG, 1024);
    assert_eq!(
        server("tcp:8888"),
        ServerEndpoint::Tcp {
            port: 8888,
            interface: ip("0.0.0.0"),
            backlog: DEFAULT_BACKLOG
        }
    );
    assert_eq!(
        server("unix:/tmp/s"),
        ServerEndpoint::Unix {
            path: "/tmp/s".into(),
            mode: 0o666,
            backlog: DEFAULT_BACKLOG,
            lockfile: true
        }
    );
    // test_tcp6 style: an escaped IPv6 interface
    assert_eq!(
        server("tcp6:port=80:interface=\\:\\:1"),
        ServerEndpoint::Tcp {
            port: 80,
            interface: ip("::1"),
            backlog: DEFAULT_BACKLOG
        }
    );
    assert_eq!(
        server("tcp6:80"),
        ServerEndpoint::Tcp {
            port: 80,
            interface: ip("::"),
            backlog: DEFAULT_BACKLOG
        }
    );
}

#[test]
fn twisted_client_vectors() {
    let expected = tcp_client("example.com", 1234, 7, Some("10.0.0.2"));
    for s in [
        "tcp:host=example.com:port=1234:timeout=7:bindAddress=10.0.0.2",
        "tcp:example.com:1234:timeout=7:bindAddress=10.0.0.2",
        "tcp:example.com:port=1234:timeout=7:bindAddress=10.0.0.2",
        "tcp:host=example.com:1234:timeout=7:bindAddress=10.0.0.2",
    ] {
        assert_eq!(client(s), expected, "{s}");
    }
    assert_eq!(
        client("tcp:host=example.com:port=1234"),
        tcp_client("example.com", 1234, 30, None)
    );
    assert_eq!(
        client("unix:path=/var/foo/bar:lockfile=1:timeout=9"),
        ClientEndpoint::Unix {
            path: "/var/foo/bar".into(),
            timeout: Duration::from_secs(9),
            check_pid: true
        }
    );
    assert_eq!(
        client("unix:path=/var/foo/bar"),
        ClientEndpoint::Unix {
            path: "/var/foo/bar".into(),
            timeout: Duration::from_secs(30),
            check_pid: false
        }
    );
    assert_eq!(
        client("unix:/var/foo/bar"),
        ClientEndpoint::Unix {
            path: "/var/foo/bar".into(),
            timeout: Duration::from_secs(30),
            check_pid: false
        }
    );
    // Twisted upper-cases client types before lookup.
    assert_eq!(
        client("TCP:localhost:8888"),
        tcp_client("localhost", 8888, 30, None)
    );
}

#[test]
fn seed_strings_and_udp() {
    assert_eq!(
        client("tcp:localhost:8888"),
        tcp_client("localhost", 8888, 30, None)
    );
    assert_eq!(
        server("tcp:port=8888:interface=127.0.0.1"),
        ServerEndpoint::Tcp {
            port: 8888,
            interface: ip("127.0.0.1"),
            backlog: DEFAULT_BACKLOG
        }
    );
    assert_eq!(
        server("udp:7"),
        ServerEndpoint::Udp {
            port: 7,
            interface: ip("0.0.0.0")
        }
    );
    assert_eq!(
        server("udp:7:interface=127.0.0.1"),
        ServerEndpoint::Udp {
            port: 7,
            interface: ip("127.0.0.1")
        }
    );
    assert_eq!(
        client("udp:localhost:7"),
        ClientEndpoint::Udp {
            host: "localhost".into(),
            port: 7
        }
    );
}

#[test]
fn escapes_and_equals_signs() {
    // A backslash escapes `:`, `=` and itself; after the first `=`, `=` is literal.
    assert_eq!(
        client("unix:path=/tmp/a\\:b=c"),
        ClientEndpoint::Unix {
            path: "/tmp/a:b=c".into(),
            timeout: Duration::from_secs(30),
            check_pid: false
        }
    );
    assert_eq!(
        client("unix:/tmp/x\\=y\\\\z"),
        ClientEndpoint::Unix {
            path: "/tmp/x=y\\z".into(),
            timeout: Duration::from_secs(30),
            check_pid: false
        }
    );
    assert_eq!(client("tcp:\\:\\:1:7"), tcp_client("::1", 7, 30, None));
}

#[test]
fn errors_say_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        ("", "empty endpoint description (expected e.g. tcp:8888)"),
        (
            "tcp:80\\",
            "endpoint description ends with an unfinished backslash escape",
        ),
        (
            "sctp:443",
            "unknown server endpoint type \"sctp\" (expected tcp, tcp6, unix, udp, ssl or haproxy)",
        ),
        ("tcp", "tcp endpoint is missing its port (e.g. tcp:8888)"),
        (
            "tcp:localhost:8888",
            "tcp endpoint port \"localhost\" is not valid: expected a port from 0 to 65535",
        ),
        (
            "tcp:70000",
            "tcp endpoint port \"70000\" is not valid: expected a port from 0 to 65535",
        ),
        (
            "tcp:80:colour=red",
            "tcp endpoint has no parameter \"colour\" (it takes port, interface, backlog)",
        ),
        (
            "tcp:80:port=81",
            "tcp endpoint parameter port is given more than once",
        ),
        (
            "tcp:80:127.0.0.1:5:extra",
            "tcp endpoint has an unexpected extra parameter \"extra\"",
        ),
        (
            "tcp:80:interface=localhost",
            "tcp endpoint interface \"localhost\" is not valid: expected an IP address (escape IPv6 colons as \\:)",
        ),
        (
            "tcp6:80:interface=127.0.0.1",
            "tcp6 endpoint interface \"127.0.0.1\" is not valid: expected an IPv6 address",
        ),
        (
            "tcp:80:backlog=-1",
            "tcp endpoint backlog \"-1\" is not valid: expected a whole number from 1 to 65535",
        ),
        (
            "tcp:80:backlog=99999999999",
            "tcp endpoint backlog \"99999999999\" is not valid: expected a whole number from 1 to 65535",
        ),
        (
            "tcp6:port=8888:interface=::1",
            "tcp6 endpoint has an empty parameter (\"::\"); escape the colons of an IPv6 address: interface=\\:\\:1",
        ),
        (
            "tcp:8888:interface=127.0.0.1:",
            "tcp endpoint ends with ':' (remove it, or escape it as \\: if it belongs to the value)",
        ),
        (
            "unix:",
            "unix endpoint is missing its address (e.g. unix:/tmp/echo.sock)",
        ),
        (
            "unix:/s:mode=7777",
            "unix endpoint mode \"7777\" is not valid: expected octal permission bits up to 777, such as 660",
        ),
        (
            "unix:/s:mode=999",
            "unix endpoint mode \"999\" is not valid: expected octal permission bits up to 777, such as 660",
        ),
        (
            "unix:/s:lockfile=yes",
            "unix endpoint lockfile \"yes\" is not valid: expected 0 or 1",
        ),
    ];
    for (input, message) in cases {
        let err = input.parse::<ServerEndpoint>().expect_err(input);
        assert_eq!(err.to_string(), *message, "{input}");
    }
    let cases: &[(&str, &str)] = &[
        (
            "tcp:localhost",
            "tcp endpoint is missing its port (e.g. tcp:localhost:8888)",
        ),
        (
            "tcp:8888",
            "tcp client endpoint needs a host before the port: tcp:localhost:8888 (tcp:8888 alone is how a server listens)",
        ),
        (
            "tcp:port=80",
            "tcp endpoint is missing its host (e.g. tcp:localhost:8888)",
        ),
        (
            "tcp:localhost:0",
            "tcp endpoint port \"0\" is not valid: expected a port from 1 to 65535",
        ),
        (
            "tcp:h:80:timeout=0",
            "tcp endpoint timeout \"0\" is not valid: expected a number of seconds above 0",
        ),
        (
            "tcp:h:80:timeout=-1.5",
            "tcp endpoint timeout \"-1.5\" is not valid: expected a number of seconds above 0",
        ),
        (
            "tcp:h:80:bindAddress=nowhere",
            "tcp endpoint bindAddress \"nowhere\" is not valid: expected an IP address (escape IPv6 colons as \\:)",
        ),
        (
            "tcp:h:80:interface=1.2.3.4",
            "tcp endpoint has no parameter \"interface\" (it takes host, port, timeout, bindAddress)",
        ),
        (
            "tcp:a:1:b",
            "tcp endpoint has an unexpected extra parameter \"b\"",
        ),
        (
            "tcp6:h:80",
            "unknown client endpoint type \"tcp6\" (expected tcp, tls, unix or udp)",
        ),
    ];
    for (input, message) in cases {
        let err = input.parse::<ClientEndpoint>().expect_err(input);
        assert_eq!(err.to_string(), *message, "{input}");
    }
    assert_eq!(
        "x:1".parse::<ClientEndpoint>(),
        Err(EndpointError::UnknownType {
            role: Role::Client,
            kind: "x".into(),
            expected: "tcp, tls, unix or udp"
        })
    );
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9:=\\\\/._-]{1,12}"
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from)
    ]
}

fn server_endpoint() -> impl Strategy<Value = ServerEndpoint> {
    prop_oneof![
        (any::<u16>(), any_ip(), 1u32..=65_535).prop_map(|(port, interface, backlog)| {
            ServerEndpoint::Tcp {
                port,
                interface,
                backlog,
            }
        }),
        (text(), 0u32..=0o777, 1u32..=65_535, any::<bool>()).prop_map(
            |(path, mode, backlog, lockfile)| ServerEndpoint::Unix {
                path,
                mode,
                backlog,
                lockfile
            }
        ),
        (any::<u16>(), any_ip())
            .prop_map(|(port, interface)| ServerEndpoint::Udp { port, interface }),
        (
            any::<u16>(),
            any_ip(),
            1u32..=65_535,
            [
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
            ],
            prop_oneof![
                Just(TlsMethod::Any),
                Just(TlsMethod::Tls12),
                Just(TlsMethod::Tls13)
            ],
            0..=crate::MAX_SESSION_TICKETS,
        )
            .prop_map(
                |(port, interface, backlog, files, method, session_tickets)| {
                    let [
                        private_key,
                        cert_key,
                        extra_cert_chain,
                        ca_certs,
                        dh_parameters,
                    ] = files;
                    ServerEndpoint::Ssl {
                        port,
                        interface,
                        backlog,
                        tls: Box::new(ServerTls {
                            private_key,
                            cert_key,
                            extra_cert_chain,
                            ca_certs,
                            method,
                            dh_parameters,
                            session_tickets,
                        }),
                    }
                }
            ),
    ]
}

fn client_endpoint() -> impl Strategy<Value = ClientEndpoint> {
    prop_oneof![
        (
            text(),
            1u16..,
            1u64..100_000_000,
            proptest::option::of(any_ip())
        )
            .prop_map(|(host, port, t, bind_address)| {
                ClientEndpoint::Tcp {
                    host,
                    port,
                    timeout: Duration::from_millis(t),
                    bind_address,
                }
            }),
        (text(), 1u64..100_000_000, any::<bool>()).prop_map(|(path, t, check_pid)| {
            ClientEndpoint::Unix {
                path,
                timeout: Duration::from_millis(t),
                check_pid,
            }
        }),
        (text(), 1u16..).prop_map(|(host, port)| ClientEndpoint::Udp { host, port }),
        (
            text(),
            1u16..,
            1u64..100_000_000,
            proptest::option::of(any_ip()),
            proptest::option::of(text()),
            proptest::option::of((text(), proptest::option::of(text()))),
        )
            .prop_map(|(host, port, t, bind_address, trust_roots, cert)| {
                let (certificate, private_key) = match cert {
                    Some((c, k)) => (Some(c), k),
                    None => (None, None),
                };
                ClientEndpoint::Tls {
                    host,
                    port,
                    timeout: Duration::from_millis(t),
                    bind_address,
                    tls: Box::new(ClientTls {
                        trust_roots,
                        certificate,
                        private_key,
                    }),
                }
            }),
    ]
}

proptest! {
    /// Display gives the canonical description; parsing it gives the value back.
    #[test]
    fn server_descriptions_round_trip(e in server_endpoint()) {
        prop_assert_eq!(e.to_string().parse::<ServerEndpoint>(), Ok(e));
    }

    #[test]
    fn client_descriptions_round_trip(e in client_endpoint()) {
        prop_assert_eq!(e.to_string().parse::<ClientEndpoint>(), Ok(e));
    }

    /// No input makes the parser panic.
    #[test]
    fn any_string_parses_or_errors(s in "\\PC{0,40}") {
        let _ = s.parse::<ServerEndpoint>();
        let _ = s.parse::<ClientEndpoint>();
    }
}

#[test]
fn haproxy_wraps_a_stream_endpoint() {
    let wrapped = server("haproxy:tcp:8080:interface=127.0.0.1");
    assert_eq!(
        wrapped,
        ServerEndpoint::Haproxy(Box::new(ServerEndpoint::Tcp {
            port: 8080,
            interface: ip("127.0.0.1"),
            backlog: DEFAULT_BACKLOG,
        }))
    );
    assert_eq!(
        wrapped.to_string(),
        "haproxy:tcp:port=8080:interface=127.0.0.1:backlog=1024"
    );
    assert_eq!(server(&wrapped.to_string()), wrapped, "round trip");
    assert!(matches!(
        server("haproxy:unix:/tmp/e.sock"),
        ServerEndpoint::Haproxy(inner) if matches!(*inner, ServerEndpoint::Unix { .. })
    ));
    for bad in ["haproxy:udp:7", "haproxy:haproxy:tcp:1", "haproxy:"] {
        let error = bad.parse::<ServerEndpoint>().unwrap_err();
        assert!(
            matches!(
                error,
                EndpointError::UnknownType { .. } | EndpointError::Empty
            ),
            "{bad}: {error}"
        );
    }
    assert_eq!(
        "haproxy:udp:7"
            .parse::<ServerEndpoint>()
            .unwrap_err()
            .to_string(),
        "unknown server endpoint type \"udp\" (expected tcp, tcp6, unix or ssl after haproxy:)"
    );
}

#[test]
fn ssl_server_takes_twisteds_keywords() {
    // test_endpoints.py test_ssl, with our keyword for client certificates.
    let e = server(
        "ssl:1234:backlog=12:privateKey=k.pem:certKey=c.pem:sslmethod=TLSv1_2_METHOD:interface=10.0.0.1:caCerts=ca.pem",
    );
    assert_eq!(
        e,
        ServerEndpoint::Ssl {
            port: 1234,
            interface: ip("10.0.0.1"),
            backlog: 12,
            tls: Box::new(ServerTls {
                private_key: Some("k.pem".into()),
                cert_key: Some("c.pem".into()),
                extra_cert_chain: None,
                ca_certs: Some("ca.pem".into()),
                method: TlsMethod::Tls12,
                dh_parameters: None,
                session_tickets: 0,
            }),
        }
    );
    let ServerEndpoint::Ssl { tls, .. } = server("ssl:8443:sessionTickets=2") else {
        panic!("not ssl");
    };
    assert_eq!(tls.session_tickets, 2, "resumption is asked for by name");
    // Positional order as in `_parseSSL(port, privateKey, certKey, ...)`.
    let ServerEndpoint::Ssl { port, tls, .. } = server("ssl:8443:key.pem:cert.pem") else {
        panic!("not ssl");
    };
    assert_eq!(port, 8443);
    assert_eq!((tls.key_file(), tls.cert_file()), ("key.pem", "cert.pem"));
    // Twisted's defaults: server.pem for both; the key file holds the cert.
    let ServerEndpoint::Ssl {
        tls,
        interface,
        backlog,
        ..
    } = server("ssl:443")
    else {
        panic!("not ssl");
    };
    assert_eq!(
        (tls.key_file(), tls.cert_file()),
        ("server.pem", "server.pem")
    );
    assert_eq!((interface, backlog), (ip("0.0.0.0"), DEFAULT_BACKLOG));
    let ServerEndpoint::Ssl { tls, .. } = server("ssl:443:privateKey=both.pem") else {
        panic!("not ssl");
    };
    assert_eq!(tls.cert_file(), "both.pem");
    assert_eq!(
        server("ssl:443:sslmethod=SSLv23_METHOD"),
        server("ssl:443:sslmethod=TLS_METHOD")
    );
}

#[test]
fn tls_client_takes_twisteds_keywords() {
    assert_eq!(
        client(
            "tls:example.com:443:timeout=5:bindAddress=10.0.0.2:trustRoots=/etc/ca:certificate=c.pem:privateKey=k.pem"
        ),
        ClientEndpoint::Tls {
            host: "example.com".into(),
            port: 443,
            timeout: Duration::from_secs(5),
            bind_address: Some(ip("10.0.0.2")),
            tls: Box::new(ClientTls {
                trust_roots: Some("/etc/ca".into()),
                certificate: Some("c.pem".into()),
                private_key: Some("k.pem".into()),
            }),
        }
    );
    assert_eq!(
        client("tls:host=localhost:port=8443"),
        ClientEndpoint::Tls {
            host: "localhost".into(),
            port: 8443,
            timeout: Duration::from_secs(30),
            bind_address: None,
            tls: Box::default(),
        }
    );
    // Client types are case-insensitive in Twisted.
    assert_eq!(client("TLS:localhost:8443"), client("tls:localhost:8443"));
}

#[test]
fn tls_errors_say_what_is_wrong() {
    let cases = [
        (
            "ssl:443:sslmethod=TLSv1_METHOD",
            "ssl endpoint sslmethod \"TLSv1_METHOD\" is not valid: expected TLS_METHOD, TLSv1_2_METHOD or TLSv1_3_METHOD (SSLv3, TLS 1.0 and 1.1 are not offered)",
        ),
        (
            "ssl:privateKey=k.pem",
            "ssl endpoint is missing its port (e.g. ssl:8443:privateKey=key.pem:certKey=cert.pem)",
        ),
        (
            "ssl:443:trustRoots=ca.pem",
            "ssl endpoint has no parameter \"trustRoots\" (it takes port, privateKey, certKey, sslmethod, interface, backlog, extraCertChain, dhParameters, caCerts, sessionTickets)",
        ),
        (
            "ssl:443:sessionTickets=9",
            "ssl endpoint sessionTickets \"9\" is not valid: expected a whole number of tickets from 0 (none: every handshake a full one) to 8",
        ),
        (
            "ssl:443:sessionTickets=-1",
            "ssl endpoint sessionTickets \"-1\" is not valid: expected a whole number of tickets from 0 (none: every handshake a full one) to 8",
        ),
        (
            "ssl:443:sessionTickets=",
            "ssl endpoint sessionTickets \"\" is not valid: expected a whole number of tickets from 0 (none: every handshake a full one) to 8",
        ),
    ];
    for (bad, message) in cases {
        assert_eq!(
            bad.parse::<ServerEndpoint>().unwrap_err().to_string(),
            message,
            "{bad}"
        );
    }
    let cases = [
        (
            "tls:localhost",
            "tls endpoint is missing its port (e.g. tls:localhost:8443)",
        ),
        (
            "tls:localhost:8443:privateKey=k.pem",
            "tls endpoint is missing its certificate (privateKey is the key of a client certificate) (e.g. tls:localhost:8443:certificate=client.pem:privateKey=client.key)",
        ),
        (
            "tls:localhost:8443:caCerts=ca.pem",
            "tls endpoint has no parameter \"caCerts\" (it takes host, port, timeout, bindAddress, certificate, privateKey, trustRoots)",
        ),
        (
            "tls:localhost:0",
            "tls endpoint port \"0\" is not valid: expected a port from 1 to 65535",
        ),
    ];
    for (bad, message) in cases {
        assert_eq!(
            bad.parse::<ClientEndpoint>().unwrap_err().to_string(),
            message,
            "{bad}"
        );
    }
}

#[test]
fn haproxy_wraps_ssl_too() {
    let e = server("haproxy:ssl:8443:privateKey=k.pem");
    assert!(
        matches!(&e, ServerEndpoint::Haproxy(inner) if matches!(**inner, ServerEndpoint::Ssl { port: 8443, .. })),
        "{e:?}"
    );
    assert_eq!(server(&e.to_string()), e, "round trip");
}

/// `trustRoots=` with nothing after it names no file: a usage error that
/// says so, not a later "cannot read" of a file called "".
#[test]
fn a_tls_file_parameter_with_no_value_is_refused_at_parse_time() {
    for bad in [
        "ssl:8443:caCerts=",
        "ssl:8443:privateKey=",
        "ssl:8443:certKey=:privateKey=k.pem",
    ] {
        let error = bad.parse::<ServerEndpoint>().unwrap_err();
        assert!(error.to_string().contains("a file name"), "{bad}: {error}");
    }
    for bad in [
        "tls:localhost:443:trustRoots=",
        "tls:h:1:certificate=:privateKey=k",
    ] {
        let error = bad.parse::<ClientEndpoint>().unwrap_err();
        assert!(error.to_string().contains("a file name"), "{bad}: {error}");
    }
}
