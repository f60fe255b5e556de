//! The UDP notification listener (WAP connectionless push uses port 2948).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use syncml_core::notify::{Package0, MAX_SIZE};

use super::wsp;

/// Receives package #0 datagrams.
///
/// A datagram is passed on as the package #0 it carries: as is when it parses as a
/// bare package #0, its data when it is a WSP push of
/// `application/vnd.syncml.notification`. A WSP push of any other content type is
/// not for the DM client and is dropped; anything else is passed on unchanged, for
/// [`verify`](super::verify) to refuse with its reason.
#[derive(Debug)]
pub struct UdpListener {
    socket: UdpSocket,
}

impl UdpListener {
    /// Binds a socket to `addr` (for example `0.0.0.0:2948`).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpListener> {
        Ok(UdpListener {
            socket: UdpSocket::bind(addr)?,
        })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Waits up to `timeout` for a datagram; `None` when none arrived in time (at
    /// once for a zero timeout).
    ///
    /// Datagrams over [`MAX_SIZE`] and pushes of other content types are dropped
    /// and the wait goes on for the rest of the time.
    pub fn recv(&self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        // One byte more than the limit shows that a datagram exceeds it.
        let mut buf = vec![0u8; MAX_SIZE + 1];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket.set_read_timeout(Some(left))?;
            let (len, peer) = match self.socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if len > MAX_SIZE {
                tracing::warn!(%peer, "dropped a datagram over {MAX_SIZE} bytes");
                continue;
            }
            match package0(&buf[..len]) {
                Some(bytes) => return Ok(Some(bytes.to_vec())),
                None => tracing::debug!(%peer, "dropped a WSP push that is not a DM notification"),
            }
        }
    }
}

/// The package #0 a datagram carries (see [`UdpListener`]); `None` for a push of
/// another content type.
pub(crate) fn package0(datagram: &[u8]) -> Option<&[u8]> {
    // A bare package #0 first: its header fixes 37 bits (version and reserved),
    // which the bytes of a push at that offset (inside the wrapped digest) match by
    // a chance near 2^-36, while a random digest looks like a push header far more
    // often.
    if Package0::parse(datagram).is_ok() {
        return Some(datagram);
    }
    match wsp::parse_push(datagram) {
        Ok(push) if push.content_type.is_notification() => Some(push.data),
        Ok(_) => None,
        Err(_) => Some(datagram),
    }
}
