//! Length-prefixed frames over the parent/worker channel.
//!
//! Every frame is `[u64 little-endian length][body]`. A request body is
//! `[u64 request id][u32 task-id length][task id][arguments]`; a response body is
//! `[u64 request id][u8 status][payload]`. Arguments and results use the crate's
//! wire format (`wire.rs`). The length is checked against the configured maximum
//! *before* anything is allocated, on both sides.

use std::io::{self, Read};

use super::wire;

/// Response statuses.
pub(crate) const OK: u8 = 0;
pub(crate) const PANICKED: u8 = 1;
pub(crate) const ARGS_DECODE: u8 = 2;
pub(crate) const RESULT_ENCODE: u8 = 3;
pub(crate) const UNKNOWN_TASK: u8 = 4;
/// The request was cancelled before the worker started it; it did not run.
pub(crate) const CANCELLED: u8 = 5;
/// The result's frame would exceed the maximum frame size (nothing more is sent);
/// the worker stays usable.
pub(crate) const TOO_LARGE: u8 = 6;
/// The worker is retiring (see `RETIRING`) and did not run this request: send it to
/// another worker.
pub(crate) const RETIRED: u8 = 7;
/// Set on the status of the last request a worker runs before it is replaced (its
/// task count or memory reached the pool's limit): the parent sends it nothing more,
/// and the requests it had already sent come back `RETIRED`.
pub(crate) const RETIRING: u8 = 0x80;

/// Bytes before a request's arguments: length, id, task-id length.
const REQUEST_FIXED: usize = 8 + 8 + 4;
/// Bytes before a response's payload: length, id, status.
pub(crate) const RESPONSE_HEADER: usize = 8 + 8 + 1;

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

/// The whole frame of a request for task `task_id`, with its arguments written by
/// `arguments` (which stops with `TooLarge` once the body would pass `max_body`
/// bytes); the id is set later, by whoever sends it (see [`set_request_id`]).
pub(crate) fn request(
    task_id: &str,
    max_body: u64,
    arguments: impl FnOnce(&mut Vec<u8>, usize) -> Result<(), wire::Error>,
) -> Result<Vec<u8>, wire::Error> {
    let mut frame = Vec::with_capacity(REQUEST_FIXED + task_id.len() + 16);
    frame.extend_from_slice(&[0; 16]);
    frame.extend_from_slice(&(task_id.len() as u32).to_le_bytes());
    frame.extend_from_slice(task_id.as_bytes());
    let limit = usize::try_from(max_body)
        .unwrap_or(usize::MAX)
        .saturating_add(8);
    arguments(&mut frame, limit)?;
    let body = (frame.len() - 8) as u64;
    frame[..8].copy_from_slice(&body.to_le_bytes());
    Ok(frame)
}

/// Sets the id of a request frame built by [`request`].
pub(crate) fn set_request_id(frame: &mut [u8], id: u64) {
    frame[8..16].copy_from_slice(&id.to_le_bytes());
}

/// A request, as the worker sees it (the body of a frame).
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

/// Starts a response in `out` (cleared): its header, to be completed by
/// [`finish_response`] once the payload is appended.
pub(crate) fn begin_response(out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0; RESPONSE_HEADER]);
}

/// Completes the response that [`begin_response`] started.
pub(crate) fn finish_response(out: &mut [u8], id: u64, status: u8) {
    let body = (out.len() - 8) as u64;
    out[..8].copy_from_slice(&body.to_le_bytes());
    out[8..16].copy_from_slice(&id.to_le_bytes());
    out[16] = status;
}

/// A response, as the parent sees it.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) id: u64,
    pub(crate) status: u8,
    pub(crate) payload: Vec<u8>,
}

/// A response from its frame's body.
pub(crate) fn parse_response(body: &[u8]) -> Option<Response> {
    let id = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let status = *body.get(8)?;
    Some(Response {
        id,
        status,
        payload: body.get(9..)?.to_vec(),
    })
}

/// Reads one frame body of at most `max` bytes (blocking).
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

/// Frames arriving in pieces on a non-blocking channel: bytes go in as they are read,
/// whole frame bodies come out.
#[derive(Debug, Default)]
pub(crate) struct FrameBuffer {
    /// Initialised once as it grows; `start..end` holds bytes not consumed yet.
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameBuffer {
    /// Reads what `input` has now into the buffer: `Ok(0)` at end of file,
    /// `WouldBlock` when nothing is there.
    pub(crate) fn fill(&mut self, input: &mut impl Read) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.bytes.len() - self.end < 16 << 10 {
            self.make_room(64 << 10);
        }
        let read = input.read(&mut self.bytes[self.end..])?;
        self.end += read;
        Ok(read)
    }

    /// Moves the unread bytes to the front and grows the buffer so that `room` more
    /// bytes fit after them.
    fn make_room(&mut self, room: usize) {
        self.bytes.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.bytes.len() < self.end + room {
            self.bytes.resize(self.end + room, 0);
        }
    }

    /// The next whole frame's body, if one is in; an error if its length is over
    /// `max` (the peer broke the protocol).
    pub(crate) fn next_frame(&mut self, max: u64) -> Result<Option<&[u8]>, FrameError> {
        let unread = &self.bytes[self.start..self.end];
        let Some(header) = unread.first_chunk::<8>() else {
            return Ok(None);
        };
        let length = u64::from_le_bytes(*header);
        if length > max {
            return Err(FrameError::TooLarge { length, max });
        }
        let length = usize::try_from(length).map_err(|_| FrameError::TooLarge { length, max })?;
        let have = unread.len();
        if have - 8 < length {
            if self.bytes.len() - self.start < length + 8 {
                // Room for the whole of a large frame, so that it is read in few calls.
                self.make_room(length + 8 - have);
            }
            return Ok(None);
        }
        let body = self.start + 8..self.start + 8 + length;
        self.start = body.end;
        Ok(Some(&self.bytes[body]))
    }

    /// Whether no bytes of an incomplete frame are waiting.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_lengths_are_checked_before_allocating() {
        let mut frame =
            request("m::f", 1024, |out, limit| wire::encode(&7u8, out, limit)).expect("request");
        set_request_id(&mut frame, 42);
        let body = read_frame(&mut frame.as_slice(), 1024).expect("read");
        let parsed = parse_request(&body).expect("parse");
        assert_eq!(
            (parsed.id, parsed.task, parsed.args),
            (42, "m::f", &[7u8][..])
        );

        let over = request("m::f", 32, |out, limit| {
            wire::encode(&[0u8; 64][..], out, limit)
        });
        assert!(matches!(over, Err(wire::Error::TooLarge { .. })));

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

    #[test]
    fn a_frame_buffer_yields_frames_however_the_bytes_arrive() {
        let mut wire_bytes = Vec::new();
        for (id, payload) in [(1u64, &b"one"[..]), (2, b""), (3, &[9u8; 70_000][..])] {
            let mut out = Vec::new();
            begin_response(&mut out);
            out.extend_from_slice(payload);
            finish_response(&mut out, id, OK | RETIRING);
            wire_bytes.extend_from_slice(&out);
        }
        // Fed a few bytes at a time.
        for chunk in [1, 7, 4096] {
            let mut buffer = FrameBuffer::default();
            let mut responses = Vec::new();
            for piece in wire_bytes.chunks(chunk) {
                buffer.fill(&mut &piece[..]).expect("fill");
                while let Some(body) = buffer.next_frame(1 << 20).expect("frame") {
                    responses.push(parse_response(body).expect("response"));
                }
            }
            assert!(buffer.is_empty());
            let ids: Vec<u64> = responses.iter().map(|r| r.id).collect();
            assert_eq!(ids, [1, 2, 3]);
            assert_eq!(responses[0].payload, b"one");
            assert_eq!(responses[2].payload.len(), 70_000);
            assert_eq!(responses[1].status, OK | RETIRING);
        }
        let mut buffer = FrameBuffer::default();
        buffer.fill(&mut &u64::MAX.to_le_bytes()[..]).expect("fill");
        assert!(matches!(
            buffer.next_frame(1024),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
