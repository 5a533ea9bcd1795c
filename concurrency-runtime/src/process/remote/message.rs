//! The messages between a caller and a worker host (little-endian, length-prefixed
//! strings). Every decoder checks lengths first and returns `None` on anything
//! malformed: a message from the network never panics a host or a caller.
//!
//! - A request (`PREFIX.tasks`, with the caller's reply subject):
//!   `"CRQ1" [u16 build len][build] [u16 name len][name] [request body]`, the body
//!   being the local pool's (the task's registry number, then its arguments).
//! - From the host, a heartbeat for every task of one caller that it holds (on the
//!   caller's `INBOX.beat`), soon after a task comes and every interval while it waits
//!   or runs: `"CRH2" [u32 host pid] [u32 capacity] [u16+host id] [u16+label] [u32
//!   count][u64 task number]...`; then to the task's reply subject one answer: `"CRA1" [u8 status] [u32 worker pid] [payload]`, the status as
//!   the local protocol's, or [`BUILD_MISMATCH`], [`CRASHED`] (payload:
//!   `[i32 signal or -1][i32 exit code or -1]`), [`FAILED`] (payload: the message).
//! - A cancellation (`PREFIX.cancel.HOST_ID`): the request's reply subject.
//!
//! What does not fit in one message of the server (`max_payload`) is held by its
//! sender and fetched in parts by the receiver: a request whose body is held is
//! `"CRP1" [build] [name] [u64 body length] [u16+subject]`, an answer whose payload is
//! held `"CRB1" [u8 status] [u32 worker pid] [u64 length] [u16+subject]`. The receiver
//! asks the subject for the bytes from an offset (`[u64 offset]`), and the holder
//! answers `[u8 1][bytes]` (as many as fit in a message), or `[u8 0]` when it holds
//! nothing there any more.
//!
//! With at-least-once delivery, a request is a JetStream message on `PREFIX.queue`
//! with the same payload and its reply subject in the [`REPLY_HEADER`] header (a caller
//! publishes each task once; it keeps the first answer of a task delivered twice).

/// The host runs another build of the program: the request's task numbers could mean
/// other code there.
pub(crate) const BUILD_MISMATCH: u8 = 100;
/// The host's local worker crashed running the task.
pub(crate) const CRASHED: u8 = 101;
/// The host could not run the task (its pool failed); the payload says why.
pub(crate) const FAILED: u8 = 102;
/// The host holds as many tasks as it may (its capacity): send the request again.
pub(crate) const BUSY: u8 = 103;

/// The header of a queued request that names its reply subject.
pub(crate) const REPLY_HEADER: &str = "Concurrency-Reply";

const REQUEST: &[u8; 4] = b"CRQ1";
const HEARTBEAT: &[u8; 4] = b"CRH2";
const ANSWER: &[u8; 4] = b"CRA1";
const HELD_REQUEST: &[u8; 4] = b"CRP1";
const HELD_ANSWER: &[u8; 4] = b"CRB1";

fn put_str(out: &mut Vec<u8>, text: &str) {
    let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads what a message holds, front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..count)?, self.0.get(count..)?);
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let length = usize::from(self.u16()?);
        std::str::from_utf8(self.take(length)?).ok()
    }
}

/// A request for task `name`, whose local request body is `body`.
pub(crate) fn request(build: &str, name: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + build.len() + name.len() + body.len());
    out.extend_from_slice(REQUEST);
    put_str(&mut out, build);
    put_str(&mut out, name);
    out.extend_from_slice(body);
    out
}

/// A request for task `name` whose body (`length` bytes) its caller holds at
/// `subject`.
pub(crate) fn held_request(build: &str, name: &str, length: u64, subject: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + build.len() + name.len() + subject.len());
    out.extend_from_slice(HELD_REQUEST);
    put_str(&mut out, build);
    put_str(&mut out, name);
    out.extend_from_slice(&length.to_le_bytes());
    put_str(&mut out, subject);
    out
}

/// A request, as a host reads it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    pub(crate) build: &'a str,
    pub(crate) name: &'a str,
    pub(crate) body: Body<'a>,
}

/// Bytes in the message, or held by their sender.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum Body<'a> {
    Inline(&'a [u8]),
    Held { length: u64, subject: &'a str },
}

pub(crate) fn parse_request(message: &[u8]) -> Option<Request<'_>> {
    let mut reader = Reader(message);
    let kind = reader.take(4)?;
    let held = match kind {
        _ if kind == REQUEST => false,
        _ if kind == HELD_REQUEST => true,
        _ => return None,
    };
    let build = reader.str()?;
    let name = reader.str()?;
    let body = if held {
        let length = reader.u64()?;
        let subject = reader.str()?;
        reader.0.is_empty().then_some(())?;
        Body::Held { length, subject }
    } else {
        Body::Inline(reader.0)
    };
    Some(Request { build, name, body })
}

/// An answer with `status` from worker `pid` whose payload (`length` bytes) the host
/// holds at `subject`.
pub(crate) fn held_answer(status: u8, pid: u32, length: u64, subject: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + subject.len());
    out.extend_from_slice(HELD_ANSWER);
    out.push(status);
    out.extend_from_slice(&pid.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
    put_str(&mut out, subject);
    out
}

/// The holder's answer to a request for the bytes from `offset` of `held`: at most
/// `most` of them, or a `[0]` when it holds nothing there.
pub(crate) fn part(held: Option<&[u8]>, offset: &[u8], most: usize) -> Vec<u8> {
    let offset = Reader(offset)
        .u64()
        .and_then(|offset| usize::try_from(offset).ok());
    match (held, offset) {
        (Some(bytes), Some(offset)) if offset < bytes.len() => {
            let end = bytes.len().min(offset.saturating_add(most.max(1)));
            let mut out = Vec::with_capacity(1 + end - offset);
            out.push(1);
            out.extend_from_slice(&bytes[offset..end]);
            out
        }
        _ => vec![0],
    }
}

/// The bytes in a holder's answer, or `None` when it holds nothing there.
pub(crate) fn parse_part(message: &[u8]) -> Option<&[u8]> {
    match message.split_first() {
        Some((1, bytes)) if !bytes.is_empty() => Some(bytes),
        _ => None,
    }
}

/// The start of a heartbeat from host `host` (process `pid`, named `label`, holding at
/// most `capacity` tasks): the task numbers follow (see [`beats`]).
pub(crate) fn heartbeat(pid: u32, capacity: u32, host: &str, label: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + host.len() + label.len());
    out.extend_from_slice(HEARTBEAT);
    out.extend_from_slice(&pid.to_le_bytes());
    out.extend_from_slice(&capacity.to_le_bytes());
    put_str(&mut out, host);
    put_str(&mut out, label);
    out
}

/// A heartbeat (its start made by [`heartbeat`]) for the tasks numbered `ids`.
pub(crate) fn beats(start: &[u8], ids: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(start.len() + 4 + 8 * ids.len());
    out.extend_from_slice(start);
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// A heartbeat, as a caller reads it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Heartbeat<'a> {
    pub(crate) pid: u32,
    pub(crate) capacity: u32,
    pub(crate) host: &'a str,
    pub(crate) label: &'a str,
    pub(crate) ids: Vec<u64>,
}

pub(crate) fn parse_heartbeat(message: &[u8]) -> Option<Heartbeat<'_>> {
    let mut reader = Reader(message);
    (reader.take(4)? == HEARTBEAT).then_some(())?;
    let pid = reader.u32()?;
    let capacity = reader.u32()?;
    let host = reader.str()?;
    let label = reader.str()?;
    let count = usize::try_from(reader.u32()?).ok()?;
    // The count is checked against what is there before anything is allocated.
    (reader.0.len() == count.checked_mul(8)?).then_some(())?;
    let ids = (0..count)
        .map(|_| reader.u64())
        .collect::<Option<Vec<u64>>>()?;
    Some(Heartbeat {
        pid,
        capacity,
        host,
        label,
        ids,
    })
}

/// An answer with `status` from the host's worker `pid`.
pub(crate) fn answer(status: u8, pid: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(ANSWER);
    out.push(status);
    out.extend_from_slice(&pid.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A crash's payload.
pub(crate) fn crash(signal: Option<i32>, exit_code: Option<i32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    out.extend_from_slice(&signal.unwrap_or(-1).to_le_bytes());
    out.extend_from_slice(&exit_code.unwrap_or(-1).to_le_bytes());
    out
}

/// What a caller reads on a task's reply subject: its answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reply<'a> {
    pub(crate) status: u8,
    pub(crate) pid: u32,
    pub(crate) payload: Body<'a>,
}

pub(crate) fn parse_reply(message: &[u8]) -> Option<Reply<'_>> {
    let mut reader = Reader(message);
    let kind = reader.take(4)?;
    if kind == ANSWER {
        let status = *reader.take(1)?.first()?;
        let pid = reader.u32()?;
        return Some(Reply {
            status,
            pid,
            payload: Body::Inline(reader.0),
        });
    }
    if kind == HELD_ANSWER {
        let status = *reader.take(1)?.first()?;
        let pid = reader.u32()?;
        let length = reader.u64()?;
        let subject = reader.str()?;
        reader.0.is_empty().then_some(())?;
        return Some(Reply {
            status,
            pid,
            payload: Body::Held { length, subject },
        });
    }
    None
}

/// A crash's signal and exit code.
pub(crate) fn parse_crash(payload: &[u8]) -> Option<(Option<i32>, Option<i32>)> {
    let mut reader = Reader(payload);
    let (signal, exit_code) = (reader.i32()?, reader.i32()?);
    Some((
        (signal >= 0).then_some(signal),
        (exit_code >= 0).then_some(exit_code),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_anything_cut_short_is_refused() {
        let request_bytes = request("build-1", "crunch", &[1, 2, 3]);
        assert_eq!(
            parse_request(&request_bytes),
            Some(Request {
                build: "build-1",
                name: "crunch",
                body: Body::Inline(&[1, 2, 3])
            })
        );
        for cut in 0..request_bytes.len() - 3 {
            assert_eq!(parse_request(&request_bytes[..cut]), None, "cut at {cut}");
        }
        let beat = beats(&heartbeat(42, 256, "host-a", "rack 7"), &[3, 9]);
        assert_eq!(
            parse_heartbeat(&beat),
            Some(Heartbeat {
                pid: 42,
                capacity: 256,
                host: "host-a",
                label: "rack 7",
                ids: vec![3, 9]
            })
        );
        for cut in 0..beat.len() {
            assert_eq!(parse_heartbeat(&beat[..cut]), None, "cut at {cut}");
        }
        // A count that claims more than the message holds is refused.
        let mut lying = heartbeat(1, 1, "h", "l");
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_heartbeat(&lying), None);
        let crashed = answer(CRASHED, 7, &crash(Some(11), None));
        let Some(Reply {
            status, payload, ..
        }) = parse_reply(&crashed)
        else {
            panic!("an answer");
        };
        assert_eq!(status, CRASHED);
        let Body::Inline(payload) = payload else {
            panic!("inline");
        };
        assert_eq!(parse_crash(payload), Some((Some(11), None)));
        assert_eq!(parse_reply(b"junk"), None);
        assert_eq!(parse_reply(b""), None);
    }

    #[test]
    fn held_bodies_and_answers_round_trip_and_their_parts_cover_the_bytes_once() {
        let held = held_request("b", "big", 10, "_INBOX.x.part.3");
        let expected = Body::Held {
            length: 10,
            subject: "_INBOX.x.part.3",
        };
        assert_eq!(
            parse_request(&held).map(|request| request.body),
            Some(expected)
        );
        for cut in 0..held.len() {
            assert_eq!(parse_request(&held[..cut]), None, "cut at {cut}");
        }
        let mut longer = held.clone();
        longer.push(0);
        assert_eq!(parse_request(&longer), None, "trailing bytes");
        let answer = held_answer(0, 9, 10, "p.part.h.1");
        assert_eq!(
            parse_reply(&answer),
            Some(Reply {
                status: 0,
                pid: 9,
                payload: Body::Held {
                    length: 10,
                    subject: "p.part.h.1"
                }
            })
        );
        // Parts of at most 4 bytes: 0..4, 4..8, 8..10, then nothing.
        let bytes: Vec<u8> = (0..10).collect();
        let mut fetched = Vec::new();
        loop {
            let offset = (fetched.len() as u64).to_le_bytes();
            match parse_part(&part(Some(&bytes), &offset, 4)) {
                Some(chunk) => {
                    assert!(chunk.len() <= 4);
                    fetched.extend_from_slice(chunk);
                }
                None => break,
            }
        }
        assert_eq!(fetched, bytes);
        assert_eq!(parse_part(&part(None, &0u64.to_le_bytes(), 4)), None);
        assert_eq!(parse_part(&part(Some(&bytes), b"short", 4)), None);
    }
}
