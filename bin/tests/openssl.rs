//! TLS against OpenSSL (Debian's `openssl` 3 and `socat`'s OpenSSL
//! addresses, installed by `.ci/run`): certificates made by the `openssl`
//! tool, not by us; `openssl s_client` as the client of our `ssl:` server;
//! `socat OPENSSL-LISTEN ... PIPE` (an OpenSSL echo server) as the server our
//! `tls:` client verifies; TLS 1.2 and 1.3; mutual TLS both ways; wrong host
//! names, unknown CAs and garbage.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(20);

/// Certificates made once per test binary by the `openssl` tool.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
}

/// A CA, a certificate signed by it (`name.pem`, `name.key`) with the
/// given extensions.
fn issue(dir: &Path, ca: &str, name: &str, subject: &str, key: &[&str], extensions: &str) {
    let mut req = vec!["req", "-new", "-nodes", "-keyout"];
    let key_file = format!("{name}.key");
    let csr = format!("{name}.csr");
    req.extend([key_file.as_str(), "-out", csr.as_str(), "-subj", subject]);
    req.extend(key);
    openssl(dir, &req);
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).unwrap();
    let (ca_pem, ca_key, out) = (
        format!("{ca}.pem"),
        format!("{ca}.key"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &out,
            "-days",
            "3",
            "-extfile",
            &ext,
        ],
    );
}

fn pki() -> Option<&'static Pki> {
    if !have("openssl") {
        return None;
    }
    static PKI: OnceLock<Pki> = OnceLock::new();
    Some(PKI.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("echo-openssl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let rsa = ["-newkey", "rsa:2048"];
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for (ca, subject) in [("ca", "/CN=Test CA"), ("other-ca", "/CN=Other CA")] {
            let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
            let mut args = vec![
                "req",
                "-x509",
                "-nodes",
                "-days",
                "3",
                "-keyout",
                &key,
                "-out",
                &pem,
                "-subj",
                subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ];
            args.extend(ec);
            openssl(&dir, &args);
        }
        // The server: RSA (PKCS#8 key as OpenSSL 3 writes it).
        issue(
            &dir,
            "ca",
            "server",
            "/CN=localhost",
            &rsa,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        // A server certificate for another name.
        issue(
            &dir,
            "ca",
            "elsewhere",
            "/CN=echo.test",
            &ec,
            "subjectAltName=DNS:echo.test\nextendedKeyUsage=serverAuth\n",
        );
        issue(
            &dir,
            "ca",
            "alice",
            "/O=Echo Tests/CN=alice",
            &ec,
            "extendedKeyUsage=clientAuth\n",
        );
        issue(
            &dir,
            "other-ca",
            "mallory",
            "/CN=mallory",
            &ec,
            "extendedKeyUsage=clientAuth\n",
        );
        Pki { dir }
    }))
}

/// Our server on `ssl:` with the OpenSSL-made certificate and `extra`
/// endpoint keywords.
fn ssl_server(pki: &Pki, extra: &str, args: &[&str]) -> Server {
    let listen = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}{extra}",
        pki.path("server.key"),
        pki.path("server.pem")
    );
    Server::start_listening(&["--listen", &listen], args)
}

/// `openssl s_client` connected to `port` with `args`, fed `input` while
/// standard input stays open; returns what came back once `input.len()`
/// bytes did (or what did by the deadline), and its standard error.
fn s_client(port: u16, args: &[&str], input: &[u8]) -> (Vec<u8>, String) {
    let mut child = Peer(
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-quiet",
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run openssl s_client"),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let want = input.len();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        stdin // kept open: -quiet ignores EOF, and the echo must come first
    });
    let mut stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut back = Vec::new();
        let mut buf = [0u8; 65536];
        while back.len() < want {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => back.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send(back);
    });
    let back = rx.recv_timeout(LONG).unwrap_or_default();
    let _ = child.0.kill();
    let _ = child.0.wait();
    drop(writer.join());
    let mut err = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (back, err)
}

#[test]
fn openssl_s_client_echoes_through_our_ssl_server_over_tls12_and_tls13() {
    each_io(|_io| {
        let Some(pki) = pki() else { return };
        let server = ssl_server(pki, "", &[]);
        let input = random_bytes(300_000, 7);
        for version in ["-tls1_2", "-tls1_3"] {
            let (back, err) = s_client(
                server.port,
                &[
                    version,
                    "-CAfile",
                    &pki.path("ca.pem"),
                    "-verify_return_error",
                    "-verify_hostname",
                    "localhost",
                    "-servername",
                    "localhost",
                ],
                &input,
            );
            assert!(
                back == input,
                "{version}: {} of {} bytes came back\n{err}\n{}",
                back.len(),
                input.len(),
                server.log()
            );
            assert!(err.contains("verify return:1"), "{version}: {err}");
        }
        server.wait_log("connection lost", 2, LONG);
        assert!(
            !server.log().contains("TLS handshake failed"),
            "{}",
            server.log()
        );
    });
}

#[test]
fn mutual_tls_admits_openssls_client_certificate_and_logs_its_subject() {
    each_io(|_io| {
        let Some(pki) = pki() else { return };
        let server = ssl_server(pki, &format!(":caCerts={}", pki.path("ca.pem")), &[]);
        let ca = pki.path("ca.pem");
        let (cert, key) = (pki.path("alice.pem"), pki.path("alice.key"));
        let input = b"mutual hello\n".to_vec();
        let (back, err) = s_client(
            server.port,
            &["-CAfile", &ca, "-cert", &cert, "-key", &key],
            &input,
        );
        assert_eq!(text(&back), text(&input), "{err}\n{}", server.log());
        server.wait_log("connection made", 1, LONG);
        assert!(
            server.log().contains("subject=\"O=Echo Tests, CN=alice\""),
            "{}",
            server.log()
        );
        // Without a certificate, and with one from another CA: refused, logged
        // with the reason, never admitted.
        let (mallory, mallory_key) = (pki.path("mallory.pem"), pki.path("mallory.key"));
        let cases: [&[&str]; 2] = [
            &["-CAfile", &ca],
            &["-CAfile", &ca, "-cert", &mallory, "-key", &mallory_key],
        ];
        for args in cases {
            let (back, _) = s_client(server.port, args, b"x");
            assert!(
                back.is_empty(),
                "{args:?}: echoed without a valid certificate"
            );
        }
        server.wait_log("TLS handshake failed", 2, LONG);
        let log = server.log();
        assert!(log.contains("the client sent no certificate"), "{log}");
        assert!(log.contains("UnknownIssuer"), "{log}");
        // The server's hint names the server's knob, not the client's.
        assert!(log.contains("caCerts="), "{log}");
        assert!(
            !log.contains("trustRoots") && !log.contains("--insecure"),
            "{log}"
        );
        assert_eq!(log.matches("connection made").count(), 1, "{log}");
    });
}

/// `bench` against a server that wants a client certificate, with none:
/// each request fails under `tls_handshake` with the server's reason, not
/// as a broken connection.
#[test]
fn bench_without_the_client_certificate_a_server_requires_says_so() {
    each_io(|_io| {
        let Some(pki) = pki() else { return };
        let server = ssl_server(pki, &format!(":caCerts={}", pki.path("ca.pem")), &[]);
        let connect = format!(
            "tls:localhost:{}:trustRoots={}",
            server.port,
            pki.path("ca.pem")
        );
        let out = client(&[
            "bench",
            "--connect",
            &connect,
            "-c",
            "2",
            "-d",
            "1",
            "-w",
            "0",
        ]);
        let said = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains("2 TLS failure"), "{said}");
        assert!(!said.contains("broken"), "{said}");
        assert!(
            said.contains("first TLS failure:") && said.contains("client certificate"),
            "{said}"
        );
        let json = client(&[
            "bench",
            "--connect",
            &connect,
            "-c",
            "2",
            "-d",
            "1",
            "-w",
            "0",
            "--json",
        ]);
        assert!(
            text(&json.stdout).contains("\"tls_handshake\":2"),
            "{}",
            text(&json.stdout)
        );
    });
}

/// A certificate OpenSSL makes by `x509 -req` without `-extfile` is X.509
/// v1, which rustls refuses: said once, with how to make a v3 one; and a
/// key that is not the certificate's is said so in words.
#[test]
fn a_version_1_certificate_or_a_foreign_key_is_refused_in_words() {
    let Some(pki) = pki() else { return };
    let dir = &pki.dir;
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            "v1.key",
            "-out",
            "v1.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509", "-req", "-in", "v1.csr", "-signkey", "v1.key", "-out", "v1.pem", "-days", "2",
        ],
    );
    for (cert, key, says) in [
        ("v1.pem", "v1.key", "X.509 version 1"),
        (
            "server.pem",
            "alice.key",
            "the private key is not the certificate's",
        ),
    ] {
        let listen = format!(
            "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
            pki.path(key),
            pki.path(cert)
        );
        let out = Command::new(SERVER)
            .args(["--listen", &listen])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.matches(says).count(), 1, "{err}");
        assert!(
            !err.contains("peer"),
            "our own certificate is no peer's: {err}"
        );
    }
    let connect = format!(
        "tls:localhost:1:certificate={}:privateKey={}",
        pki.path("v1.pem"),
        pki.path("v1.key")
    );
    let out = client(&["--connect", &connect]);
    assert!(
        text(&out.stderr).contains("X.509 version 1"),
        "{}",
        text(&out.stderr)
    );
}

/// `socat OPENSSL-LISTEN ... PIPE`: an OpenSSL echo server on a free port.
struct Socat {
    _child: Peer,
    port: u16,
}

impl Socat {
    fn start(pki: &Pki, cert: &str, options: &str) -> Self {
        let port = free_port();
        let address = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={}{options}",
            pki.path(&format!("{cert}.pem")),
            pki.path(&format!("{cert}.key"))
        );
        let child = Peer(
            Command::new("socat")
                .args([address.as_str(), "PIPE"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run socat"),
        );
        // Owned (and ended on drop) before the wait, which may fail.
        let socat = Self {
            _child: child,
            port,
        };
        wait_listening(port, LONG);
        socat
    }
}

#[test]
fn our_tls_client_verifies_an_openssl_echo_server_over_tls12_and_tls13() {
    let Some(pki) = pki() else { return };
    if !have("socat") {
        return;
    }
    for version in ["TLS1.2", "TLS1.3"] {
        let socat = Socat::start(
            pki,
            "server",
            &format!(",verify=0,min-version={version},max-version={version}"),
        );
        let connect = format!(
            "tls:localhost:{}:trustRoots={}",
            socat.port,
            pki.path("ca.pem")
        );
        let out = client(&["--connect", &connect, "-c", "3", "--size", "100000"]);
        assert!(out.status.success(), "{version}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout).matches("100000 bytes").count(),
            3,
            "{version}"
        );
        // --stdin over TLS: a 1 MB stream, verified byte for byte.
        let input = random_bytes(1_000_000, 3);
        let out = client_with_stdin(&["--connect", &connect, "--stdin"], input.clone());
        assert!(out.status.success(), "{version}: {}", text(&out.stderr));
        assert!(out.stdout == input, "{version}: --stdin echo differs");
    }
}

/// A TLS write ends once rustls holds the bytes, so a message bigger than
/// the socket's buffers can leave its last records in rustls until a
/// flush: without one, `bench` over `tls:` waited for the echo of bytes it
/// had never sent ("timed out"). The peer is asyncio's TLS echo server
/// (Python's `ssl`, OpenSSL) reading 4,000 bytes at a time, so the
/// client's socket is full when its last record is taken: the old client
/// failed 2 of 6 requests of 4 MiB here.
#[test]
fn bench_over_tls_sends_every_record_of_a_large_message() {
    let Some(pki) = pki() else { return };
    let mut asyncio = Command::new("python3");
    asyncio
        .arg(peer_script("asyncio_echo_server.py"))
        .args(["--tls", &pki.path("server.pem"), &pki.path("server.key")])
        .args(["--read", "4000"]);
    let (_peer, port) = announced(asyncio);
    let connect = format!("tls:localhost:{port}:trustRoots={}", pki.path("ca.pem"));
    let common = [
        "--connect",
        &connect,
        "-s",
        "4194304",
        "-w",
        "0",
        "--timeout",
        "5",
        "--json",
    ];
    let closed = client(&[&["bench", "-c", "2", "-r", "6"][..], &common].concat());
    let json = text(&closed.stdout);
    assert!(closed.status.success(), "{json} {}", text(&closed.stderr));
    assert!(json.contains("\"requests\":6,"), "{json}");
    assert!(json.contains("\"errors\":0,"), "{json}");
    let open = client(
        &[
            &["bench", "-c", "1", "--rate", "4", "-d", "1.5"][..],
            &common,
        ]
        .concat(),
    );
    let json = text(&open.stdout);
    assert!(open.status.success(), "{json} {}", text(&open.stderr));
    assert!(json.contains("\"errors\":0,"), "{json}");
    assert!(!json.contains("\"requests\":0,"), "{json}");
}

/// One echo-client connection to `connect` fails with exit 1 and `why`.
fn refused(connect: &str, why: &str) {
    let out = client(&["--connect", connect, "-c", "1"]);
    assert_eq!(out.status.code(), Some(1), "{connect}");
    assert!(text(&out.stderr).contains(why), "{}", text(&out.stderr));
}

#[test]
fn our_tls_client_refuses_a_wrong_name_an_unknown_ca_and_says_why() {
    let Some(pki) = pki() else { return };
    if !have("socat") {
        return;
    }
    let elsewhere = Socat::start(pki, "elsewhere", ",verify=0");
    let connect = format!(
        "tls:localhost:{}:trustRoots={}",
        elsewhere.port,
        pki.path("ca.pem")
    );
    refused(&connect, "does not carry the host name");
    let socat = Socat::start(pki, "server", ",verify=0");
    let connect = format!(
        "tls:localhost:{}:trustRoots={}",
        socat.port,
        pki.path("other-ca.pem")
    );
    refused(&connect, "not signed by a trusted CA");
    // Without trustRoots: Mozilla's roots, which do not hold our test CA.
    let connect = format!("tls:localhost:{}", socat.port);
    refused(&connect, "UnknownIssuer");
    // --insecure accepts it, and says so.
    let out = client(&["--connect", &connect, "-c", "1", "--insecure"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not verified"),
        "{}",
        text(&out.stderr)
    );
}

/// Rejecting a server's certificate, our client tells the server why with
/// an alert, as OpenSSL's clients do: OpenSSL's `s_server` reports it
/// (before, it saw the connection close with no word).
#[test]
fn our_tls_client_tells_an_openssl_server_why_it_rejects_its_certificate() {
    let Some(pki) = pki() else { return };
    let port = free_port();
    let child = Peer(
        Command::new("openssl")
            .args(["s_server", "-accept", &port.to_string(), "-naccept", "1"])
            .args([
                "-cert",
                &pki.path("server.pem"),
                "-key",
                &pki.path("server.key"),
            ])
            .stdin(Stdio::piped()) // kept open: at its end s_server closes
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut s_server = child;
    wait_listening(port, LONG);
    let connect = format!(
        "tls:localhost:{port}:trustRoots={}",
        pki.path("other-ca.pem")
    );
    let out = client(&["--connect", &connect, "-c", "1"]);
    let mut said = String::new();
    for pipe in [
        s_server
            .0
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read>),
        s_server
            .0
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut pipe = pipe;
        let _ = pipe.read_to_string(&mut said);
    }
    assert!(
        text(&out.stderr).contains("not signed by a trusted CA"),
        "{}\ns_server said: {said}",
        text(&out.stderr)
    );
    assert!(said.contains("alert unknown ca"), "s_server said: {said}");
}

#[test]
fn our_tls_client_presents_its_certificate_to_an_openssl_server_that_requires_one() {
    let Some(pki) = pki() else { return };
    if !have("socat") {
        return;
    }
    let ca = pki.path("ca.pem");
    let socat = Socat::start(pki, "server", &format!(",verify=1,cafile={ca}"));
    let base = format!("tls:localhost:{}:trustRoots={ca}", socat.port);
    let alice = format!(
        "{base}:certificate={}:privateKey={}",
        pki.path("alice.pem"),
        pki.path("alice.key")
    );
    let out = client(&["--connect", &alice, "-c", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("hello server").count(), 2);
    let mallory = format!(
        "{base}:certificate={}:privateKey={}",
        pki.path("mallory.pem"),
        pki.path("mallory.key")
    );
    for connect in [base.as_str(), mallory.as_str()] {
        let out = client(&["--connect", connect, "-c", "1", "--timeout", "5"]);
        assert_eq!(out.status.code(), Some(1), "{connect}: refused");
        let err = text(&out.stderr);
        assert!(err.contains("connection 1:"), "{connect}: {err}");
        // TLS 1.3: the client's handshake is over before OpenSSL checks
        // the certificate; its refusal arrives as an alert.
        assert!(
            err.contains("TLS alert") && err.contains("certificate"),
            "{connect}: a clear reason: {err}"
        );
    }
}

#[test]
fn a_client_with_no_version_in_common_is_refused_with_the_reason() {
    let Some(pki) = pki() else { return };
    let server = ssl_server(pki, ":sslmethod=TLSv1_2_METHOD", &[]);
    let (back, err) = s_client(
        server.port,
        &["-tls1_3", "-CAfile", &pki.path("ca.pem")],
        b"x",
    );
    assert!(back.is_empty(), "{err}");
    server.wait_log("TLS handshake failed", 1, LONG);
    assert!(
        server
            .log()
            .contains("no TLS version or cipher suite in common"),
        "{}",
        server.log()
    );
    // The same server speaks TLS 1.2 to a client that offers it.
    let (back, err) = s_client(
        server.port,
        &["-tls1_2", "-CAfile", &pki.path("ca.pem")],
        b"twelve\n",
    );
    assert_eq!(text(&back), "twelve\n", "{err}");
}

#[test]
fn garbage_instead_of_a_client_hello_is_logged_and_the_server_serves_on() {
    each_io(|_io| {
        let Some(pki) = pki() else { return };
        let server = ssl_server(
            pki,
            "",
            &["--handshake-timeout", "1", "--stats-interval", "200ms"],
        );
        let mut raw = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        raw.write_all(b"hello, I am not TLS\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        raw.set_read_timeout(Some(LONG)).unwrap();
        let _ = raw.read_to_end(&mut rest);
        assert!(!text(&rest).contains("hello"), "never echoed in clear");
        server.wait_log("that is not TLS", 1, LONG);
        server.wait_log("tls_handshake_failures=1", 1, LONG);
        let (back, err) = s_client(
            server.port,
            &["-CAfile", &pki.path("ca.pem"), "-verify_return_error"],
            b"still here\n",
        );
        assert_eq!(text(&back), "still here\n", "{err}");
    });
}

#[test]
fn self_signed_quick_start_prints_a_fingerprint_openssl_agrees_with_and_a_working_command() {
    each_io(|io| {
        if !have("openssl") {
            return;
        }
        let mut child = Peer(
            Command::new(SERVER)
                .env("ECHO_IO", io)
                .args(["--listen", "ssl:0:interface=127.0.0.1", "--self-signed"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        let mut next = || lines.next().unwrap().unwrap();
        let (listening, fingerprint, ca, hint) = (next(), next(), next(), next());
        let _guard = child;
        assert!(
            listening.starts_with("listening on ssl:port="),
            "{listening}"
        );
        let fingerprint = fingerprint
            .split("SHA-256 ")
            .nth(1)
            .unwrap_or_else(|| panic!("{fingerprint}"))
            .to_owned();
        let ca = ca
            .strip_prefix("CA certificate written to ")
            .unwrap_or_else(|| panic!("{ca}"))
            .to_owned();
        let command = hint
            .strip_prefix("try: echo-client ")
            .unwrap_or_else(|| panic!("{hint}"));
        let args: Vec<&str> = command.split(' ').collect();
        let out = client(&args);
        assert!(out.status.success(), "{command}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout).lines().count(),
            10,
            "{}",
            text(&out.stdout)
        );
        // OpenSSL checks the chain against the written CA and computes the
        // same fingerprint.
        let port = listening
            .split(":port=")
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        let shell = format!(
            "openssl s_client -connect 127.0.0.1:{port} -CAfile {ca} -verify_return_error -verify_hostname localhost </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        );
        let out = Command::new("sh").args(["-c", &shell]).output().unwrap();
        let theirs = text(&out.stdout);
        assert!(
            theirs.trim().ends_with(&format!("={fingerprint}")),
            "openssl: {theirs:?}, ours: {fingerprint}"
        );
        let _ = std::fs::remove_file(ca);
    });
}

#[test]
fn self_signed_names_the_ssl_port_whatever_endpoints_come_first() {
    each_io(|io| {
        let mut child = Peer(
            Command::new(SERVER)
                // udp: stays on epoll: `auto`, not `uring`, which refuses it.
                .env("ECHO_IO", if io == "uring" { "auto" } else { io })
                .args(["--listen", "udp:0:interface=127.0.0.1"])
                .args(["--listen", "haproxy:ssl:0:interface=127.0.0.1"])
                .args(["--listen", "ssl:0:interface=127.0.0.1", "--self-signed"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let lines: Vec<String> = BufReader::new(child.0.stdout.take().unwrap())
            .lines()
            .take(6)
            .map(Result::unwrap)
            .collect();
        let _guard = child;
        let ssl_port = lines[2]
            .strip_prefix("listening on ssl:port=")
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_else(|| panic!("{lines:?}"));
        let hints: Vec<&String> = lines.iter().filter(|l| l.starts_with("try: ")).collect();
        assert_eq!(
            hints.len(),
            1,
            "one hint, for the plain ssl: endpoint: {lines:?}"
        );
        assert!(
            hints[0].starts_with(&format!(
                "try: echo-client --connect tls:localhost:{ssl_port}:trustRoots="
            )),
            "{lines:?}"
        );
    });
}
