//! Endpoint description strings in Twisted's grammar, as a pure parser.
//!
//! A description is a type followed by `:`-separated parameters
//! (`twisted.internet.endpoints._tokenize` and `_parse`). A parameter without
//! `=` is positional, `key=value` is a keyword; only the first `=` separates
//! (after it, only `:` is special); a backslash escapes the next character.
//! Positional parameters bind in order, as arguments of a Python call do;
//! the TCP client alone lets them fill what keywords left open, so
//! `tcp:host=example.com:1234` and `tcp:example.com:port=1234` both work.
//! Unknown keywords, duplicates and extra positional parameters are errors.
//!
//! | type | server | client |
//! | --- | --- | --- |
//! | `tcp` | `tcp:PORT[:interface=IP][:backlog=N]` (all IPv4 interfaces by default) | `tcp:HOST:PORT[:timeout=SECS][:bindAddress=IP]` |
//! | `tcp6` | like `tcp`, interface `::` by default, IPv6 only | — |
//! | `unix` | `unix:PATH[:mode=OCTAL][:backlog=N][:lockfile=0\|1]` | `unix:PATH[:timeout=SECS][:lockfile=0\|1]` |
//! | `udp` | `udp:PORT[:interface=IP]` | `udp:HOST:PORT` |
//! | `ssl` / `tls` | `ssl:PORT[:privateKey=PEM][:certKey=PEM][:extraCertChain=PEM][:caCerts=PEM][:sslmethod=M][:sessionTickets=N]` + the `tcp` keywords | `tls:HOST:PORT[:trustRoots=PEM\|DIR][:certificate=PEM][:privateKey=PEM]` + `timeout`, `bindAddress` |
//!
//! TLS follows Twisted's spellings (`ssl:` to listen, `tls:` to connect);
//! `caCerts` (require client certificates signed by that CA), a single PEM
//! file as `trustRoots` and `sslmethod=TLSv1_3_METHOD` are our extensions.
//!
//! ```
//! use echo_core::{ClientEndpoint, ServerEndpoint};
//! let server: ServerEndpoint = "tcp:8888:interface=127.0.0.1".parse()?;
//! assert_eq!(server.to_string(), "tcp:port=8888:interface=127.0.0.1:backlog=1024");
//! let client: ClientEndpoint = "tcp:localhost:8888".parse()?;
//! assert_eq!(client.to_string(), "tcp:host=localhost:port=8888:timeout=30");
//! # Ok::<(), echo_core::EndpointError>(())
//! ```

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;
use core::time::Duration;

/// The most session tickets `sessionTickets=` sends after one handshake.
pub const MAX_SESSION_TICKETS: u8 = 8;

/// Default listen backlog: 1024, as tokio's `TcpListener::bind` uses.
///
/// Deliberately not Twisted's 50: an echo peer is used to load-test proxies,
/// and with 50 the kernel resets connections when a few hundred arrive at
/// once (seen here with 200 concurrent clients). The kernel caps the value
/// at `net.core.somaxconn`.
pub const DEFAULT_BACKLOG: u32 = 1024;
/// Twisted's default client connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Twisted's default mode for a Unix socket file (`0o666`).
pub const DEFAULT_UNIX_MODE: u32 = 0o666;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEndpoint {
    /// TCP (`tcp:` or `tcp6:`).
    Tcp {
        /// Port to listen on; 0 picks a free one.
        port: u16,
        /// Address to bind: `0.0.0.0` (every IPv4 interface) unless given.
        interface: IpAddr,
        /// Listen queue length.
        backlog: u32,
    },
    /// A Unix-domain stream socket (`unix:`).
    Unix {
        /// Socket file path.
        path: String,
        /// Permission bits of the socket file.
        mode: u32,
        /// Listen queue length.
        backlog: u32,
        /// Guard the path with a lock file.
        lockfile: bool,
    },
    /// UDP datagrams (`udp:`).
    Udp {
        /// Port to bind; 0 picks a free one.
        port: u16,
        /// Address to bind.
        interface: IpAddr,
    },
    /// TLS over TCP (`ssl:`, Twisted's name for the TLS server endpoint).
    Ssl {
        /// Port to listen on; 0 picks a free one.
        port: u16,
        /// Address to bind: `0.0.0.0` unless given.
        interface: IpAddr,
        /// Listen queue length.
        backlog: u32,
        /// Certificate, key and client-certificate policy.
        tls: Box<ServerTls>,
    },
    /// A stream endpoint whose connections each start with a PROXY header
    /// (`haproxy:tcp:8888`, Twisted's wrapper): the address it declares
    /// is the connection's peer. Under `haproxy:ssl:` the header comes
    /// before the TLS handshake, as HAProxy and AWS load balancers send it
    /// (Twisted reads it inside TLS instead).
    Haproxy(Box<Self>),
}

/// The files and policy of an `ssl:` server endpoint, as named in the
/// description; reading them is the network crate's job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerTls {
    /// `privateKey`: the PEM private key (Twisted's default, used when
    /// neither file is named, is `server.pem`).
    pub private_key: Option<String>,
    /// `certKey`: the PEM certificate; the key file when not given (one
    /// file may hold both).
    pub cert_key: Option<String>,
    /// `extraCertChain`: intermediate certificates sent after ours.
    pub extra_cert_chain: Option<String>,
    /// `caCerts` (our extension): require a client certificate signed by a
    /// CA in this PEM file (mutual TLS).
    pub ca_certs: Option<String>,
    /// `sslmethod`: which protocol versions to offer.
    pub method: TlsMethod,
    /// `dhParameters`: accepted for Twisted compatibility and ignored
    /// (rustls offers no finite-field Diffie-Hellman suites).
    pub dh_parameters: Option<String>,
    /// `sessionTickets` (our extension): how many TLS 1.3 session tickets
    /// to send after each handshake, so that clients can resume (and TLS
    /// 1.2 clients get tickets too). 0, the default, sends none and keeps
    /// no sessions: every handshake is a full one. Tickets are the only
    /// bytes a TLS 1.3 server sends unasked, and a client that closes
    /// without reading them makes its kernel answer with a reset.
    pub session_tickets: u8,
}

impl ServerTls {
    /// Twisted's default key and certificate file when none is named.
    pub const DEFAULT_FILE: &'static str = "server.pem";

    /// The private key file, after Twisted's default.
    #[must_use]
    pub fn key_file(&self) -> &str {
        self.private_key.as_deref().unwrap_or(Self::DEFAULT_FILE)
    }

    /// The certificate file: `certKey`, else the key file.
    #[must_use]
    pub fn cert_file(&self) -> &str {
        self.cert_key.as_deref().unwrap_or_else(|| self.key_file())
    }
}

/// The TLS protocol versions an endpoint offers (Twisted's `sslmethod`,
/// named after OpenSSL's methods).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsMethod {
    /// TLS 1.2 and 1.3 (`TLS_METHOD`, `SSLv23_METHOD`).
    #[default]
    Any,
    /// TLS 1.2 only (`TLSv1_2_METHOD`).
    Tls12,
    /// TLS 1.3 only (`TLSv1_3_METHOD`, our extension).
    Tls13,
}

impl TlsMethod {
    /// The `sslmethod` value that selects this.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Any => "TLS_METHOD",
            Self::Tls12 => "TLSv1_2_METHOD",
            Self::Tls13 => "TLSv1_3_METHOD",
        }
    }
}

/// The trust and identity of a `tls:` client endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientTls {
    /// `trustRoots`: a directory of `*.pem` CA files (Twisted) or one PEM
    /// file (our extension); the compiled-in Mozilla roots when not given.
    pub trust_roots: Option<String>,
    /// `certificate`: a client certificate to present (PEM; it may hold
    /// the key too).
    pub certificate: Option<String>,
    /// `privateKey`: the client certificate's key, when not in its file.
    pub private_key: Option<String>,
}

/// Where a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEndpoint {
    /// TCP (`tcp:`).
    Tcp {
        /// Host name or address.
        host: String,
        /// Port (1-65535).
        port: u16,
        /// Give up connecting after this long.
        timeout: Duration,
        /// Local address to connect from (any port).
        bind_address: Option<IpAddr>,
    },
    /// A Unix-domain stream socket (`unix:`).
    Unix {
        /// Socket file path.
        path: String,
        /// Give up connecting after this long.
        timeout: Duration,
        /// Check that the server's lock file names a live process.
        check_pid: bool,
    },
    /// UDP datagrams (`udp:`).
    Udp {
        /// Host name or address.
        host: String,
        /// Port (1-65535).
        port: u16,
    },
    /// TLS over TCP (`tls:`): the host is also the name the server's
    /// certificate must carry (and the SNI sent).
    Tls {
        /// Host name or address.
        host: String,
        /// Port (1-65535).
        port: u16,
        /// Give up connecting (and shaking hands) after this long.
        timeout: Duration,
        /// Local address to connect from (any port).
        bind_address: Option<IpAddr>,
        /// Trust roots and client certificate.
        tls: Box<ClientTls>,
    },
}

/// Which side a description was meant for (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A listening endpoint.
    Server,
    /// A connecting endpoint.
    Client,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Server => "server",
            Self::Client => "client",
        })
    }
}

/// Why an endpoint description did not parse. Each message names the part
/// that is wrong and what would be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The description was empty.
    #[error("empty endpoint description (expected e.g. tcp:8888)")]
    Empty,
    /// The description ended in a lone backslash.
    #[error("endpoint description ends with an unfinished backslash escape")]
    TrailingBackslash,
    /// The type before the first `:` is not known.
    #[error("unknown {role} endpoint type {kind:?} (expected {expected})")]
    UnknownType {
        /// Server or client.
        role: Role,
        /// The type given.
        kind: String,
        /// The types accepted.
        expected: &'static str,
    },
    /// A required parameter is missing.
    #[error("{kind} endpoint is missing its {name} (e.g. {example})")]
    Missing {
        /// The endpoint type.
        kind: &'static str,
        /// The missing parameter.
        name: &'static str,
        /// An example description.
        example: &'static str,
    },
    /// A keyword this endpoint type does not take.
    #[error("{kind} endpoint has no parameter {name:?} (it takes {})", accepted.join(", "))]
    UnknownParameter {
        /// The endpoint type.
        kind: &'static str,
        /// The keyword given.
        name: String,
        /// The keywords accepted.
        accepted: &'static [&'static str],
    },
    /// The description ends with `:`.
    #[error(
        "{kind} endpoint ends with ':' (remove it, or escape it as \\: if it belongs to the value)"
    )]
    TrailingColon {
        /// The endpoint type.
        kind: &'static str,
    },
    /// An empty parameter between two `:` (often an IPv6 address whose
    /// colons were not escaped).
    #[error(
        "{kind} endpoint has an empty parameter (\"::\"); escape the colons of an IPv6 address: interface=\\:\\:1"
    )]
    EmptyParameter {
        /// The endpoint type.
        kind: &'static str,
    },
    /// A client TCP endpoint given only a port (the server form).
    #[error(
        "tcp client endpoint needs a host before the port: tcp:localhost:{port} (tcp:{port} alone is how a server listens)"
    )]
    MissingHost {
        /// What was given, as the port.
        port: String,
    },
    /// A parameter given twice.
    #[error("{kind} endpoint parameter {name} is given more than once")]
    Duplicate {
        /// The endpoint type.
        kind: &'static str,
        /// The parameter.
        name: &'static str,
    },
    /// More positional parameters than the type takes.
    #[error("{kind} endpoint has an unexpected extra parameter {value:?}")]
    ExtraPositional {
        /// The endpoint type.
        kind: &'static str,
        /// The first extra value.
        value: String,
    },
    /// A value of the wrong form.
    #[error("{kind} endpoint {name} {value:?} is not valid: expected {expected}")]
    InvalidValue {
        /// The endpoint type.
        kind: &'static str,
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

/// One `:`-separated parameter.
#[derive(Debug, PartialEq, Eq)]
enum Param {
    Positional(String),
    Keyword(String, String),
}

/// Twisted's `_tokenize` + `_parse`: the type, then the parameters in order.
fn split(description: &str) -> Result<(String, Vec<Param>), EndpointError> {
    let mut fields: Vec<Vec<String>> = vec![vec![String::new()]];
    let mut after_equals = false;
    let mut chars = description.chars();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("fields is never empty");
        match c {
            ':' => {
                fields.push(vec![String::new()]);
                after_equals = false;
            }
            '=' if !after_equals => {
                field.push(String::new());
                after_equals = true;
            }
            '\\' => {
                let escaped = chars.next().ok_or(EndpointError::TrailingBackslash)?;
                field.last_mut().expect("a field has a part").push(escaped);
            }
            c => field.last_mut().expect("a field has a part").push(c),
        }
    }
    let mut fields = fields.into_iter();
    let kind = fields.next().expect("fields is never empty").concat();
    let params = fields
        .map(|mut parts| {
            if parts.len() == 2 {
                let value = parts.pop().expect("two parts");
                Param::Keyword(parts.pop().expect("two parts"), value)
            } else {
                Param::Positional(parts.pop().expect("one part"))
            }
        })
        .collect();
    Ok((kind, params))
}

/// How positional parameters bind to names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    /// In order, like a Python call.
    Strict,
    /// In order, skipping names given by keyword.
    FillFree,
}

/// Binds parameters to names the way a Python call binds arguments.
struct Bound {
    kind: &'static str,
    values: Vec<Option<String>>,
    names: &'static [&'static str],
}

impl Bound {
    /// `names` lists every keyword; the first `positional` of them may also be
    /// given positionally.
    fn bind(
        kind: &'static str,
        params: Vec<Param>,
        names: &'static [&'static str],
        positional: usize,
        binding: Binding,
    ) -> Result<Self, EndpointError> {
        let empty = |p: &Param| matches!(p, Param::Positional(v) if v.is_empty());
        // `unix:` alone: nothing was given, and the missing value says so.
        let params = if params.len() == 1 && empty(&params[0]) {
            Vec::new()
        } else {
            params
        };
        if params.last().is_some_and(empty) {
            return Err(EndpointError::TrailingColon { kind });
        }
        if params.iter().any(empty) {
            return Err(EndpointError::EmptyParameter { kind });
        }
        let mut values: Vec<Option<String>> = vec![None; names.len()];
        let mut loose = Vec::new();
        for param in params {
            match param {
                Param::Keyword(key, value) => {
                    let Some(i) = names.iter().position(|n| *n == key) else {
                        return Err(EndpointError::UnknownParameter {
                            kind,
                            name: key,
                            accepted: names,
                        });
                    };
                    if values[i].replace(value).is_some() {
                        return Err(EndpointError::Duplicate {
                            kind,
                            name: names[i],
                        });
                    }
                }
                Param::Positional(value) => loose.push(value),
            }
        }
        // Python call semantics: the i-th positional binds the i-th name, and
        // a clash with a keyword is a duplicate. Twisted's TCP client parser
        // alone lets positionals fill the names not given by keyword
        // (`tcp:host=example.com:1234`).
        let mut slots: Vec<usize> = match binding {
            Binding::Strict => (0..positional).collect(),
            Binding::FillFree => (0..positional).filter(|&i| values[i].is_none()).collect(),
        };
        slots.reverse();
        for value in loose {
            let Some(i) = slots.pop() else {
                return Err(EndpointError::ExtraPositional { kind, value });
            };
            if values[i].replace(value).is_some() {
                return Err(EndpointError::Duplicate {
                    kind,
                    name: names[i],
                });
            }
        }
        Ok(Self {
            kind,
            values,
            names,
        })
    }

    fn take(&mut self, name: &'static str) -> Option<String> {
        let i = self
            .names
            .iter()
            .position(|n| *n == name)
            .expect("name is declared");
        self.values[i].take()
    }

    fn required(
        &mut self,
        name: &'static str,
        example: &'static str,
    ) -> Result<String, EndpointError> {
        self.take(name)
            .filter(|v| !v.is_empty())
            .ok_or(EndpointError::Missing {
                kind: self.kind,
                name,
                example,
            })
    }

    fn invalid(&self, name: &'static str, value: String, expected: &'static str) -> EndpointError {
        EndpointError::InvalidValue {
            kind: self.kind,
            name,
            value,
            expected,
        }
    }

    fn port(&self, value: String, allow_zero: bool) -> Result<u16, EndpointError> {
        match value.parse::<u16>() {
            Ok(0) if !allow_zero => Err(self.invalid("port", value, "a port from 1 to 65535")),
            Ok(port) => Ok(port),
            Err(_) if allow_zero => Err(self.invalid("port", value, "a port from 0 to 65535")),
            Err(_) => Err(self.invalid("port", value, "a port from 1 to 65535")),
        }
    }

    /// A listen backlog: the kernel caps it at `net.core.somaxconn` anyway.
    fn backlog(&mut self) -> Result<u32, EndpointError> {
        match self.take("backlog") {
            None => Ok(DEFAULT_BACKLOG),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=65_535).contains(&n) => Ok(n),
                _ => Err(self.invalid("backlog", v, "a whole number from 1 to 65535")),
            },
        }
    }

    /// How many TLS 1.3 tickets a handshake ends with: a few are enough
    /// (a client uses one per resumption; browsers and OpenSSL ask for 2).
    fn session_tickets(&mut self) -> Result<u8, EndpointError> {
        match self.take("sessionTickets") {
            None => Ok(0),
            Some(v) => match v.parse::<u8>() {
                Ok(n) if n <= MAX_SESSION_TICKETS => Ok(n),
                _ => Err(self.invalid(
                    "sessionTickets",
                    v,
                    "a whole number of tickets from 0 (none: every handshake a full one) to 8",
                )),
            },
        }
    }

    fn flag(&mut self, name: &'static str, default: bool) -> Result<bool, EndpointError> {
        match self.take(name).as_deref() {
            None => Ok(default),
            Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(v) => Err(self.invalid(name, v.to_owned(), "0 or 1")),
        }
    }

    fn ip(&mut self, name: &'static str) -> Result<Option<IpAddr>, EndpointError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| self.invalid(name, v, "an IP address (escape IPv6 colons as \\:)")),
        }
    }

    /// A file name, if given; `name=` with nothing after it is an error,
    /// not a file called "".
    fn file(&mut self, name: &'static str) -> Result<Option<String>, EndpointError> {
        match self.take(name) {
            Some(v) if v.is_empty() => Err(self.invalid(name, v, "a file name")),
            v => Ok(v),
        }
    }

    /// Seconds above 0; fractions are our extension (Twisted takes whole
    /// seconds), as `--timeout` takes them.
    fn timeout(&mut self) -> Result<Duration, EndpointError> {
        match self.take("timeout") {
            None => Ok(DEFAULT_CONNECT_TIMEOUT),
            Some(v) => match v
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
            {
                Some(d) if !d.is_zero() => Ok(d),
                _ => Err(self.invalid("timeout", v, "a number of seconds above 0")),
            },
        }
    }
}

impl FromStr for ServerEndpoint {
    type Err = EndpointError;

    fn from_str(description: &str) -> Result<Self, EndpointError> {
        if description.is_empty() {
            return Err(EndpointError::Empty);
        }
        if let Some(inner) = description.strip_prefix("haproxy:") {
            return match inner.parse::<Self>()? {
                Self::Udp { .. } | Self::Haproxy(_) => Err(EndpointError::UnknownType {
                    role: Role::Server,
                    kind: inner.split(':').next().unwrap_or_default().into(),
                    expected: "tcp, tcp6, unix or ssl after haproxy:",
                }),
                stream => Ok(Self::Haproxy(Box::new(stream))),
            };
        }
        let (kind, params) = split(description)?;
        match kind.as_str() {
            "tcp" | "tcp6" => {
                let (kind, any) = if kind == "tcp" {
                    ("tcp", IpAddr::V4(Ipv4Addr::UNSPECIFIED))
                } else {
                    ("tcp6", IpAddr::V6(Ipv6Addr::UNSPECIFIED))
                };
                let mut p = Bound::bind(
                    kind,
                    params,
                    &["port", "interface", "backlog"],
                    3,
                    Binding::Strict,
                )?;
                let port = p.required("port", "tcp:8888")?;
                let port = p.port(port, true)?;
                let interface = p.ip("interface")?.unwrap_or(any);
                if kind == "tcp6" && !interface.is_ipv6() {
                    return Err(p.invalid("interface", interface.to_string(), "an IPv6 address"));
                }
                let backlog = p.backlog()?;
                Ok(Self::Tcp {
                    port,
                    interface,
                    backlog,
                })
            }
            "unix" => {
                let mut p = Bound::bind(
                    "unix",
                    params,
                    &["address", "mode", "backlog", "lockfile"],
                    4,
                    Binding::Strict,
                )?;
                let path = p.required("address", "unix:/tmp/echo.sock")?;
                let mode = match p.take("mode") {
                    None => DEFAULT_UNIX_MODE,
                    Some(v) => match u32::from_str_radix(&v, 8) {
                        Ok(mode) if mode <= 0o777 => mode,
                        _ => {
                            return Err(p.invalid(
                                "mode",
                                v,
                                "octal permission bits up to 777, such as 660",
                            ));
                        }
                    },
                };
                let backlog = p.backlog()?;
                let lockfile = p.flag("lockfile", true)?;
                Ok(Self::Unix {
                    path,
                    mode,
                    backlog,
                    lockfile,
                })
            }
            "ssl" => {
                let mut p = Bound::bind(
                    "ssl",
                    params,
                    &[
                        "port",
                        "privateKey",
                        "certKey",
                        "sslmethod",
                        "interface",
                        "backlog",
                        "extraCertChain",
                        "dhParameters",
                        "caCerts",
                        "sessionTickets",
                    ],
                    6,
                    Binding::Strict,
                )?;
                let port = p.required("port", "ssl:8443:privateKey=key.pem:certKey=cert.pem")?;
                let port = p.port(port, true)?;
                let interface = p
                    .ip("interface")?
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                let backlog = p.backlog()?;
                let method = match p.take("sslmethod") {
                    None => TlsMethod::Any,
                    Some(v) => match v.as_str() {
                        "TLS_METHOD" | "SSLv23_METHOD" => TlsMethod::Any,
                        "TLSv1_2_METHOD" => TlsMethod::Tls12,
                        "TLSv1_3_METHOD" => TlsMethod::Tls13,
                        _ => {
                            return Err(p.invalid(
                                "sslmethod",
                                v,
                                "TLS_METHOD, TLSv1_2_METHOD or TLSv1_3_METHOD (SSLv3, TLS 1.0 and 1.1 are not offered)",
                            ));
                        }
                    },
                };
                let tls = ServerTls {
                    private_key: p.file("privateKey")?,
                    cert_key: p.file("certKey")?,
                    extra_cert_chain: p.file("extraCertChain")?,
                    ca_certs: p.file("caCerts")?,
                    method,
                    dh_parameters: p.file("dhParameters")?,
                    session_tickets: p.session_tickets()?,
                };
                Ok(Self::Ssl {
                    port,
                    interface,
                    backlog,
                    tls: Box::new(tls),
                })
            }
            "udp" => {
                let mut p = Bound::bind("udp", params, &["port", "interface"], 2, Binding::Strict)?;
                let port = p.required("port", "udp:7")?;
                let port = p.port(port, true)?;
                let interface = p
                    .ip("interface")?
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                Ok(Self::Udp { port, interface })
            }
            _ => Err(EndpointError::UnknownType {
                role: Role::Server,
                kind,
                expected: "tcp, tcp6, unix, udp, ssl or haproxy",
            }),
        }
    }
}

impl FromStr for ClientEndpoint {
    type Err = EndpointError;

    fn from_str(description: &str) -> Result<Self, EndpointError> {
        if description.is_empty() {
            return Err(EndpointError::Empty);
        }
        let (kind, params) = split(description)?;
        // Twisted upper-cases client types before looking them up.
        match kind.to_ascii_lowercase().as_str() {
            "tcp" => {
                let mut p = Bound::bind(
                    "tcp",
                    params,
                    &["host", "port", "timeout", "bindAddress"],
                    2,
                    Binding::FillFree,
                )?;
                let host = p.required("host", "tcp:localhost:8888")?;
                let Some(port) = p.take("port").filter(|v| !v.is_empty()) else {
                    if host.parse::<u16>().is_ok() {
                        return Err(EndpointError::MissingHost { port: host });
                    }
                    return Err(EndpointError::Missing {
                        kind: "tcp",
                        name: "port",
                        example: "tcp:localhost:8888",
                    });
                };
                let port = p.port(port, false)?;
                let timeout = p.timeout()?;
                let bind_address = p.ip("bindAddress")?;
                Ok(Self::Tcp {
                    host,
                    port,
                    timeout,
                    bind_address,
                })
            }
            "unix" => {
                let mut p = Bound::bind(
                    "unix",
                    params,
                    &["path", "timeout", "lockfile"],
                    1,
                    Binding::Strict,
                )?;
                let path = p.required("path", "unix:/tmp/echo.sock")?;
                let timeout = p.timeout()?;
                let check_pid = p.flag("lockfile", false)?;
                Ok(Self::Unix {
                    path,
                    timeout,
                    check_pid,
                })
            }
            "tls" => {
                let mut p = Bound::bind(
                    "tls",
                    params,
                    &[
                        "host",
                        "port",
                        "timeout",
                        "bindAddress",
                        "certificate",
                        "privateKey",
                        "trustRoots",
                    ],
                    2,
                    Binding::FillFree,
                )?;
                let host = p.required("host", "tls:localhost:8443")?;
                let port = p.required("port", "tls:localhost:8443")?;
                let port = p.port(port, false)?;
                let timeout = p.timeout()?;
                let bind_address = p.ip("bindAddress")?;
                let tls = ClientTls {
                    trust_roots: p.file("trustRoots")?,
                    certificate: p.file("certificate")?,
                    private_key: p.file("privateKey")?,
                };
                if tls.private_key.is_some() && tls.certificate.is_none() {
                    return Err(EndpointError::Missing {
                        kind: "tls",
                        name: "certificate (privateKey is the key of a client certificate)",
                        example: "tls:localhost:8443:certificate=client.pem:privateKey=client.key",
                    });
                }
                Ok(Self::Tls {
                    host,
                    port,
                    timeout,
                    bind_address,
                    tls: Box::new(tls),
                })
            }
            "udp" => {
                let mut p = Bound::bind("udp", params, &["host", "port"], 2, Binding::Strict)?;
                let host = p.required("host", "udp:localhost:7")?;
                let port = p.required("port", "udp:localhost:7")?;
                let port = p.port(port, false)?;
                Ok(Self::Udp { host, port })
            }
            _ => Err(EndpointError::UnknownType {
                role: Role::Client,
                kind,
                expected: "tcp, tls, unix or udp",
            }),
        }
    }
}

/// Writes a duration as seconds: whole ones as Twisted writes them, others
/// with their fraction (`0.5`).
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_nanos() == 0 {
            write!(f, "{}", self.0.as_secs())
        } else {
            write!(f, "{}", self.0.as_secs_f64())
        }
    }
}

/// Writes `value` with `\` and `:` escaped (Twisted's `quoteStringArgument`).
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c == '\\' || c == ':' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Writes an address with its colons escaped.
fn quoted_ip(ip: &IpAddr) -> String {
    Quoted(&ip.to_string()).to_string()
}

/// The canonical description, all keywords; parsing it gives the same value.
impl fmt::Display for ServerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp {
                port,
                interface,
                backlog,
            } => {
                let kind = if interface.is_ipv6() { "tcp6" } else { "tcp" };
                write!(
                    f,
                    "{kind}:port={port}:interface={}:backlog={backlog}",
                    quoted_ip(interface)
                )
            }
            Self::Unix {
                path,
                mode,
                backlog,
                lockfile,
            } => write!(
                f,
                "unix:address={}:mode={mode:o}:backlog={backlog}:lockfile={}",
                Quoted(path),
                u8::from(*lockfile)
            ),
            Self::Udp { port, interface } => {
                write!(f, "udp:port={port}:interface={}", quoted_ip(interface))
            }
            Self::Ssl {
                port,
                interface,
                backlog,
                tls,
            } => {
                write!(
                    f,
                    "ssl:port={port}:interface={}:backlog={backlog}",
                    quoted_ip(interface)
                )?;
                let files = [
                    ("privateKey", &tls.private_key),
                    ("certKey", &tls.cert_key),
                    ("extraCertChain", &tls.extra_cert_chain),
                    ("caCerts", &tls.ca_certs),
                    ("dhParameters", &tls.dh_parameters),
                ];
                for (name, value) in files {
                    if let Some(value) = value {
                        write!(f, ":{name}={}", Quoted(value))?;
                    }
                }
                if tls.method != TlsMethod::Any {
                    write!(f, ":sslmethod={}", tls.method.name())?;
                }
                if tls.session_tickets > 0 {
                    write!(f, ":sessionTickets={}", tls.session_tickets)?;
                }
                Ok(())
            }
            Self::Haproxy(inner) => write!(f, "haproxy:{inner}"),
        }
    }
}

/// The canonical description, all keywords; parsing it gives the same value.
impl fmt::Display for ClientEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp {
                host,
                port,
                timeout,
                bind_address,
            } => {
                write!(
                    f,
                    "tcp:host={}:port={port}:timeout={}",
                    Quoted(host),
                    Seconds(*timeout)
                )?;
                if let Some(ip) = bind_address {
                    write!(f, ":bindAddress={}", quoted_ip(ip))?;
                }
                Ok(())
            }
            Self::Unix {
                path,
                timeout,
                check_pid,
            } => write!(
                f,
                "unix:path={}:timeout={}:lockfile={}",
                Quoted(path),
                Seconds(*timeout),
                u8::from(*check_pid)
            ),
            Self::Udp { host, port } => write!(f, "udp:host={}:port={port}", Quoted(host)),
            Self::Tls {
                host,
                port,
                timeout,
                bind_address,
                tls,
            } => {
                write!(
                    f,
                    "tls:host={}:port={port}:timeout={}",
                    Quoted(host),
                    Seconds(*timeout)
                )?;
                if let Some(ip) = bind_address {
                    write!(f, ":bindAddress={}", quoted_ip(ip))?;
                }
                let files = [
                    ("trustRoots", &tls.trust_roots),
                    ("certificate", &tls.certificate),
                    ("privateKey", &tls.private_key),
                ];
                for (name, value) in files {
                    if let Some(value) = value {
                        write!(f, ":{name}={}", Quoted(value))?;
                    }
                }
                Ok(())
            }
        }
    }
}
