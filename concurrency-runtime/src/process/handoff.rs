//! Passing a file descriptor over a Unix socket (`SCM_RIGHTS`).
//!
//! The parent spawns a worker with `posix_spawn` (see `README.md`), which can place one
//! descriptor (the channel, in the stdin slot). A worker has a second socket, its
//! cancel line; the parent sends the worker's end of it over the channel, as the very
//! first message, before any request.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Room for one control message carrying one descriptor (`CMSG_SPACE(4)` is 24 bytes
/// on 64-bit Linux), aligned for `cmsghdr`.
#[repr(C, align(8))]
struct ControlSpace([u8; 64]);

const FD_LEN: u32 = std::mem::size_of::<RawFd>() as u32;

/// Sends `fd` over `socket`, with one payload byte (a stream socket carries ancillary
/// data only along with data).
pub(crate) fn send_fd(socket: &UnixStream, fd: BorrowedFd<'_>) -> io::Result<()> {
    let byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_ptr().cast_mut().cast(),
        iov_len: 1,
    };
    let mut space = ControlSpace([0; 64]);
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let space_len = unsafe { libc::CMSG_SPACE(FD_LEN) } as usize;
    // SAFETY: an all-zero `msghdr` is a valid value (null pointers, zero lengths).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = space.0.as_mut_ptr().cast();
    message.msg_controllen = space_len as _;
    // SAFETY: `message` points to `space`, which is at least `CMSG_SPACE(4)` bytes
    // and aligned for `cmsghdr`, so CMSG_FIRSTHDR returns a pointer to its start and
    // CMSG_DATA one inside it with room for one descriptor; both are written once,
    // the data unaligned.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&message);
        if header.is_null() {
            return Err(io::Error::other("no room for a control message"));
        }
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(FD_LEN) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), fd.as_raw_fd());
    }
    loop {
        // SAFETY: `message` and everything it points to (`iov`, `byte`, `space`) live
        // until the call returns; sendmsg only reads them.
        let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &message, libc::MSG_NOSIGNAL) };
        match sent {
            1 => return Ok(()),
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            -1 => return Err(io::Error::last_os_error()),
            _ => return Err(io::ErrorKind::WriteZero.into()),
        }
    }
}

/// Receives the descriptor [`send_fd`] sent, as close-on-exec. Reads exactly the one
/// payload byte, so that nothing after it is consumed.
pub(crate) fn receive_fd(socket: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut space = ControlSpace([0; 64]);
    // SAFETY: an all-zero `msghdr` is a valid value (null pointers, zero lengths).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = space.0.as_mut_ptr().cast();
    message.msg_controllen = space.0.len() as _;
    let received = loop {
        // SAFETY: `message` points to `iov` (one writable byte) and `space` (64
        // writable bytes), which live until the call returns.
        let received =
            unsafe { libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC) };
        if received != -1 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break received;
        }
    };
    match received {
        -1 => return Err(io::Error::last_os_error()),
        0 => return Err(io::ErrorKind::UnexpectedEof.into()),
        _ => {}
    }
    if message.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("the control message was truncated"));
    }
    // SAFETY: recvmsg filled `message`'s control buffer and set its length; the
    // macros walk only inside it. The header is read only after the null check, the
    // descriptor only after checking the message is an SCM_RIGHTS one long enough to
    // hold it; the data is read unaligned.
    let fd = unsafe {
        let header = libc::CMSG_FIRSTHDR(&message);
        if header.is_null()
            || (*header).cmsg_level != libc::SOL_SOCKET
            || (*header).cmsg_type != libc::SCM_RIGHTS
            || ((*header).cmsg_len as usize) < libc::CMSG_LEN(FD_LEN) as usize
        {
            return Err(io::Error::other("the message carried no descriptor"));
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<RawFd>())
    };
    // SAFETY: the kernel installed `fd` in this process for this message; nothing
    // else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_socket_sent_over_a_socket_works_at_the_other_end() {
        let (parent, worker) = UnixStream::pair().expect("pair");
        let (line, far_end) = UnixStream::pair().expect("pair");
        send_fd(&parent, std::os::fd::AsFd::as_fd(&far_end)).expect("send");
        drop(far_end);
        (&parent).write_all(b"after").expect("write");
        let received = UnixStream::from(receive_fd(&worker).expect("receive"));
        (&line).write_all(b"ping").expect("write");
        let mut ping = [0u8; 4];
        (&received).read_exact(&mut ping).expect("read");
        assert_eq!(&ping, b"ping");
        // The payload byte is consumed, nothing after it.
        let mut after = [0u8; 5];
        (&worker).read_exact(&mut after).expect("read");
        assert_eq!(&after, b"after");
    }
}
