//! The messages between a caller and a worker host (little-endian, length-prefixed
//! strings). Every decoder checks lengths first and returns `None` on anything
//! malformed: a message from the network never panics a host or a caller.
//!
//! - A request (`PREFIX.tasks`, with the caller's reply subject):
//!   `"CRQ1" [u16 build len][build] [u16 name len][name] [request body]`, the body
//!   being the local pool's (the task's registry number, then its arguments).
//! - From the host to the reply subject, a heartbeat while the task waits or runs:
//!   `"CRH1" [u32 host pid] [u16 host id len][host id] [u16 label len][label]`;
//!   then one answer: `"CRA1" [u8 status] [u32 worker pid] [payload]`, the status as
//!   the local protocol's, or [`BUILD_MISMATCH`], [`CRASHED`] (payload:
//!   `[i32 signal or -1][i32 exit code or -1]`), [`FAILED`] (payload: the message).
//! - A cancellation (`PREFIX.cancel.HOST_ID`): the request's reply subject.

/// The host runs another build of the program: the request's task numbers could mean
/// other code there.
pub(crate) const BUILD_MISMATCH: u8 = 100;
/// The host's local worker crashed running the task.
pub(crate) const CRASHED: u8 = 101;
/// The host could not run the task (its pool failed); the payload says why.
pub(crate) const FAILED: u8 = 102;

const REQUEST: &[u8; 4] = b"CRQ1";
const HEARTBEAT: &[u8; 4] = b"CRH1";
const ANSWER: &[u8; 4] = b"CRA1";

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

/// A request, as a host reads it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    pub(crate) build: &'a str,
    pub(crate) name: &'a str,
    pub(crate) body: &'a [u8],
}

pub(crate) fn parse_request(message: &[u8]) -> Option<Request<'_>> {
    let mut reader = Reader(message);
    (reader.take(4)? == REQUEST).then_some(())?;
    let build = reader.str()?;
    let name = reader.str()?;
    Some(Request {
        build,
        name,
        body: reader.0,
    })
}

/// A heartbeat from host `host` (process `pid`, named `label`).
pub(crate) fn heartbeat(pid: u32, host: &str, label: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + host.len() + label.len());
    out.extend_from_slice(HEARTBEAT);
    out.extend_from_slice(&pid.to_le_bytes());
    put_str(&mut out, host);
    put_str(&mut out, label);
    out
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

/// What a caller reads on a reply subject.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    Heartbeat {
        pid: u32,
        host: &'a str,
        label: &'a str,
    },
    Answer {
        status: u8,
        pid: u32,
        payload: &'a [u8],
    },
}

pub(crate) fn parse_reply(message: &[u8]) -> Option<Reply<'_>> {
    let mut reader = Reader(message);
    let kind = reader.take(4)?;
    if kind == HEARTBEAT {
        let pid = reader.u32()?;
        let host = reader.str()?;
        let label = reader.str()?;
        return Some(Reply::Heartbeat { pid, host, label });
    }
    if kind == ANSWER {
        let status = *reader.take(1)?.first()?;
        let pid = reader.u32()?;
        return Some(Reply::Answer {
            status,
            pid,
            payload: reader.0,
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
                body: &[1, 2, 3]
            })
        );
        for cut in 0..request_bytes.len() - 3 {
            assert_eq!(parse_request(&request_bytes[..cut]), None, "cut at {cut}");
        }
        let beat = heartbeat(42, "host-a", "rack 7");
        assert_eq!(
            parse_reply(&beat),
            Some(Reply::Heartbeat {
                pid: 42,
                host: "host-a",
                label: "rack 7"
            })
        );
        let crashed = answer(CRASHED, 7, &crash(Some(11), None));
        let Some(Reply::Answer {
            status, payload, ..
        }) = parse_reply(&crashed)
        else {
            panic!("an answer");
        };
        assert_eq!(status, CRASHED);
        assert_eq!(parse_crash(payload), Some((Some(11), None)));
        assert_eq!(parse_reply(b"junk"), None);
        assert_eq!(parse_reply(b""), None);
    }
}
