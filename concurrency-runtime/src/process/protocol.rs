//! Length-prefixed frames over the parent/worker channel.
//!
//! Every frame is `[u64 little-endian length][body]`. A request body is
//! `[u64 request id][u32 task-id length][task id][arguments]`; a response body is
//! `[u64 request id][u8 status][u64 started][u64 ended][payload]`, where `started`
//! and `ended` are when the worker ran the body, in nanoseconds of the machine's
//! monotonic clock (zero when it did not run it, or was built without the `tracing`
//! feature). Arguments and results use the crate's
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

/// Bytes before a response's payload: length, id, status, the body's start and end.
pub(crate) const RESPONSE_HEADER: usize = 8 + 8 + 1 + 8 + 8;

/// A frame whose length prefix exceeds the configured maximum: the peer broke the
/// protocol.
#[derive(Debug)]
pub(crate) struct FrameError {
    pub(crate) length: u64,
    pub(crate) max: u64,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let FrameError { length, max } = self;
        write!(
            f,
            "frame of {length} bytes exceeds the maximum frame size of {max} bytes"
        )
    }
}

/// Appends the body of a request for task number `task` (see `registry::index_of`) to
/// `out`, all but the id that starts every request (see [`request_header`]): the task's
/// number, then the arguments written by `arguments`, which stops with `TooLarge` as
/// soon as the request's frame would pass `max_frame` bytes.
pub(crate) fn request_body(
    out: &mut Vec<u8>,
    task: u32,
    max_frame: u64,
    arguments: impl FnOnce(&mut Vec<u8>, usize) -> Result<(), wire::Error>,
) -> Result<(), wire::Error> {
    let start = out.len();
    out.extend_from_slice(&task.to_le_bytes());
    // The frame's body is the 8-byte id and this.
    let limit = usize::try_from(max_frame)
        .unwrap_or(usize::MAX)
        .saturating_sub(8)
        .saturating_add(start);
    if out.len() > limit {
        return Err(wire::Error::TooLarge {
            limit: limit - start,
        });
    }
    arguments(out, limit)
}

/// The first bytes of request `id`'s frame, whose body (see [`request_body`]) is
/// `body_len` bytes long: the frame's length, then the id.
pub(crate) fn request_header(id: u64, body_len: usize) -> [u8; REQUEST_HEADER] {
    let mut header = [0u8; REQUEST_HEADER];
    header[..8].copy_from_slice(&((8 + body_len) as u64).to_le_bytes());
    header[8..].copy_from_slice(&id.to_le_bytes());
    header
}

/// Bytes before a request's body: the frame's length and the id.
pub(crate) const REQUEST_HEADER: usize = 16;

/// A request, as the worker sees it (the body of a frame).
pub(crate) struct Request<'a> {
    pub(crate) id: u64,
    /// The task's number in the registry.
    pub(crate) task: u32,
    pub(crate) args: &'a [u8],
}

pub(crate) fn parse_request(body: &[u8]) -> Option<Request<'_>> {
    let id = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let task = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?);
    let args = body.get(12..)?;
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

/// Sets when the worker ran the body (see the module's documentation), in a response
/// that [`begin_response`] started.
pub(crate) fn set_times(out: &mut [u8], started: u64, ended: u64) {
    out[17..25].copy_from_slice(&started.to_le_bytes());
    out[25..33].copy_from_slice(&ended.to_le_bytes());
}

/// A response, as the parent sees it (borrowed from the buffer it was read into).
#[derive(Debug)]
pub(crate) struct Response<'a> {
    pub(crate) id: u64,
    pub(crate) status: u8,
    /// When the worker ran the body (0: not known).
    pub(crate) ran: Ran,
    pub(crate) payload: &'a [u8],
}

/// When a worker ran a task's body, on the machine's monotonic clock (nanoseconds; 0
/// when it did not, or nobody measured), and which worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ran {
    pub(crate) pid: u32,
    pub(crate) started: u64,
    pub(crate) ended: u64,
}

/// A response from its frame's body.
pub(crate) fn parse_response(body: &[u8]) -> Option<Response<'_>> {
    let id = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let status = *body.get(8)?;
    let started = u64::from_le_bytes(body.get(9..17)?.try_into().ok()?);
    let ended = u64::from_le_bytes(body.get(17..25)?.try_into().ok()?);
    Some(Response {
        id,
        status,
        ran: Ran {
            pid: 0,
            started,
            ended,
        },
        payload: body.get(25..)?,
    })
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
            return Err(FrameError { length, max });
        }
        let length = usize::try_from(length).map_err(|_| FrameError { length, max })?;
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
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_lengths_are_checked_before_allocating() {
        let mut body = Vec::new();
        request_body(&mut body, 5, 1024, |out, limit| {
            wire::encode(&7u8, out, limit)
        })
        .expect("request");
        let mut frame = request_header(42, body.len()).to_vec();
        frame.extend_from_slice(&body);
        let mut buffer = FrameBuffer::default();
        buffer.fill(&mut frame.as_slice()).expect("fill");
        let read = buffer.next_frame(1024).expect("frame").expect("whole");
        let parsed = parse_request(read).expect("parse");
        assert_eq!((parsed.id, parsed.task, parsed.args), (42, 5, &[7u8][..]));

        let mut over = Vec::new();
        let refused = request_body(&mut over, 5, 32, |out, limit| {
            wire::encode(&[0u8; 64][..], out, limit)
        });
        assert!(matches!(refused, Err(wire::Error::TooLarge { .. })));
        assert!(over.len() <= 32);

        let mut buffer = FrameBuffer::default();
        buffer.fill(&mut &u64::MAX.to_le_bytes()[..]).expect("fill");
        assert!(buffer.next_frame(1 << 20).is_err());
        let mut truncated = 100u64.to_le_bytes().to_vec();
        truncated.extend_from_slice(b"short");
        let mut buffer = FrameBuffer::default();
        buffer.fill(&mut truncated.as_slice()).expect("fill");
        assert!(matches!(buffer.next_frame(1024), Ok(None)), "incomplete");
        assert!(!buffer.is_empty());
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
                    let response = parse_response(body).expect("response");
                    responses.push((response.id, response.status, response.payload.to_vec()));
                }
            }
            assert!(buffer.is_empty());
            let ids: Vec<u64> = responses.iter().map(|r| r.0).collect();
            assert_eq!(ids, [1, 2, 3]);
            assert_eq!(responses[0].2, b"one");
            assert_eq!(responses[2].2.len(), 70_000);
            assert_eq!(responses[1].1, OK | RETIRING);
        }
        let mut buffer = FrameBuffer::default();
        buffer.fill(&mut &u64::MAX.to_le_bytes()[..]).expect("fill");
        assert!(buffer.next_frame(1024).is_err());
    }
}
