//! `echo-client`: sends bytes to an echo server and verifies the echo. The
//! command line and every subcommand live in [`echo_bin::client`].

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    echo_bin::client::main()
}
