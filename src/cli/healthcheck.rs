//! `offergate healthcheck`: asks the admin listener for a 200, for container
//! health checks in images without a shell or curl.

use std::net::SocketAddr;
use std::process::ExitCode;

/// One plain HTTP/1.1 GET over a blocking socket, 2 s at most.
pub(super) fn healthcheck(admin: &str, path: &str) -> ExitCode {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        err!("offergate: --path must be a path such as /healthz, not {path:?}");
        return ExitCode::from(2);
    }
    let timeout = std::time::Duration::from_secs(2);
    // A name may stand for several addresses (localhost: ::1 and 127.0.0.1):
    // the first that answers is asked.
    let addresses = match admin.to_socket_addrs() {
        Ok(a) => a.collect::<Vec<SocketAddr>>(),
        Err(e) => {
            err!("offergate: --admin {admin:?} is not a host:port offergate can reach: {e}");
            return ExitCode::from(2);
        }
    };
    let ask = |address: &SocketAddr| {
        let mut s = std::net::TcpStream::connect_timeout(address, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok::<_, std::io::Error>(head)
    };
    let mut status = Err(std::io::Error::other("the name has no address"));
    for address in &addresses {
        status = ask(address);
        if status.is_ok() {
            break;
        }
    }
    match status {
        Ok(head) if head.starts_with(b"HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(head) => {
            err!(
                "offergate: {admin}{path} answered {}",
                String::from_utf8_lossy(&head)
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            err!("offergate: {admin}{path}: {e}");
            ExitCode::FAILURE
        }
    }
}
