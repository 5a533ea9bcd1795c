//! Length-prefixed frames over the parent/worker socket.
//!
//! Every frame is `[u64 little-endian length][body]`. A request body is
//! `[u64 request id][u32 task-id length][task id][postcard arguments]`; a response
//! body is `[u64 request id][u8 status][payload]`. The length is checked against the
//! configured maximum *before* anything is allocated.

use std::io::{self, Read, Write};

/// Response statuses.
pub(crate) const OK: u8 = 0;
pub(crate) const PANICKED: u8 = 1;
pub(crate) const ARGS_DECODE: u8 = 2;
pub(crate) const RESULT_ENCODE: u8 = 3;
pub(crate) const UNKNOWN_TASK: u8 = 4;
/// The request was cancelled before the worker started it; it did not run.
pub(crate) const CANCELLED: u8 = 5;
/// The result's frame would exceed the maximum frame size (payload: its length, u64
/// little-endian); the worker sends this instead, and stays usable.
pub(crate) const TOO_LARGE: u8 = 6;

#[derive(Debug)]
pub(crate) enum FrameError {
    /// The peer closed the channel cleanly between frames.
    Closed,
    /// The length prefix exceeds the configured maximum.
    TooLarge { length: u64, max: u64 },
    /// The channel ended inside a frame, or another I/O error.
    Io(io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => f.write_str("channel closed"),
            FrameError::TooLarge { length, max } => {
                write!(
                    f,
                    "frame of {length} bytes exceeds the maximum frame size of {max} bytes"
                )
            }
            FrameError::Io(error) => write!(f, "{error}"),
        }
    }
}

/// Writes one frame made of `parts`, in a single `write_all` for small frames.
pub(crate) fn write_frame(out: &mut impl Write, parts: &[&[u8]]) -> io::Result<()> {
    let length: usize = parts.iter().map(|part| part.len()).sum();
    if length <= 64 * 1024 {
        let mut frame = Vec::with_capacity(8 + length);
        frame.extend_from_slice(&(length as u64).to_le_bytes());
        for part in parts {
            frame.extend_from_slice(part);
        }
        out.write_all(&frame)
    } else {
        out.write_all(&(length as u64).to_le_bytes())?;
        for part in parts {
            out.write_all(part)?;
        }
        Ok(())
    }
}

/// Reads one frame body of at most `max` bytes.
pub(crate) fn read_frame(input: &mut impl Read, max: u64) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 8];
    let mut filled = 0;
    while filled < header.len() {
        match input.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(FrameError::Io(error)),
        }
    }
    let length = u64::from_le_bytes(header);
    if length > max {
        return Err(FrameError::TooLarge { length, max });
    }
    let length = usize::try_from(length).map_err(|_| FrameError::TooLarge { length, max })?;
    let mut body = vec![0u8; length];
    input.read_exact(&mut body).map_err(FrameError::Io)?;
    Ok(body)
}

/// A request, as the worker sees it.
pub(crate) struct Request<'a> {
    pub(crate) id: u64,
    pub(crate) task: &'a str,
    pub(crate) args: &'a [u8],
}

pub(crate) fn parse_request(body: &[u8]) -> Option<Request<'_>> {
    let id = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let task_len = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?) as usize;
    let task = std::str::from_utf8(body.get(12..12usize.checked_add(task_len)?)?).ok()?;
    let args = body.get(12 + task_len..)?;
    Some(Request { id, task, args })
}

pub(crate) fn request_header(id: u64, task: &str) -> Vec<u8> {
    let mut header = Vec::with_capacity(12 + task.len());
    header.extend_from_slice(&id.to_le_bytes());
    header.extend_from_slice(&(task.len() as u32).to_le_bytes());
    header.extend_from_slice(task.as_bytes());
    header
}

/// A response, as the parent sees it.
pub(crate) struct Response {
    pub(crate) id: u64,
    pub(crate) status: u8,
    pub(crate) payload: Vec<u8>,
}

pub(crate) fn parse_response(mut body: Vec<u8>) -> Option<Response> {
    let id = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let status = *body.get(8)?;
    let payload = body.split_off(9);
    Some(Response {
        id,
        status,
        payload,
    })
}

/// The length of a response's header: id and status.
pub(crate) const RESPONSE_HEADER_LEN: usize = 9;

pub(crate) fn response_header(id: u64, status: u8) -> [u8; RESPONSE_HEADER_LEN] {
    let mut header = [0u8; RESPONSE_HEADER_LEN];
    header[..8].copy_from_slice(&id.to_le_bytes());
    header[8] = status;
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_lengths_are_checked_before_allocating() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &[&request_header(7, "m::f"), b"args"]).expect("write");
        let body = read_frame(&mut wire.as_slice(), 1024).expect("read");
        let request = parse_request(&body).expect("parse");
        assert_eq!(
            (request.id, request.task, request.args),
            (7, "m::f", &b"args"[..])
        );

        let huge = u64::MAX.to_le_bytes();
        assert!(matches!(
            read_frame(&mut &huge[..], 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
        let mut truncated = 100u64.to_le_bytes().to_vec();
        truncated.extend_from_slice(b"short");
        assert!(matches!(
            read_frame(&mut truncated.as_slice(), 1024),
            Err(FrameError::Io(_))
        ));
        assert!(matches!(
            read_frame(&mut &[][..], 1024),
            Err(FrameError::Closed)
        ));
        assert!(parse_request(&[1, 2, 3]).is_none());
    }
}
