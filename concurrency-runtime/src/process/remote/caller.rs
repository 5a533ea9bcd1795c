//! The caller's side: process tasks published to the task subject, each with its own
//! reply subject under one subscription; heartbeats watched, cancellations passed on.
//!
//! Delivery is at most once (core request/reply): a request goes to one host of the
//! queue group and is never sent again. A task whose host goes silent for twice the
//! heartbeat interval (or that no host takes within that time) fails as `Crashed`
//! (or a `Worker` error when no host ever answered), never hangs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::config::NatsConfig;
use super::host::build_id;
use super::message::{self, Reply};
use crate::error::TaskError;
use crate::process::parent::{Answer, Job, Ran, Wakes, status_outcome};
use crate::runtime::runtime;
use crate::sync::lock;

/// The remote side, once configured.
static CALLER: OnceLock<Caller> = OnceLock::new();

struct Caller {
    jobs: mpsc::UnboundedSender<Job>,
}

/// A request in flight: its task, its host once one spoke, when it last did.
struct Pending {
    job: Job,
    host: Option<(String, u32)>,
    heard: Instant,
}

/// Whether process tasks go to worker hosts.
pub(crate) fn is_configured() -> bool {
    CALLER.get().is_some()
}

/// Sends process tasks to the worker hosts of `config` from now on.
pub(crate) fn configure(config: NatsConfig) -> Result<(), String> {
    let (jobs, receiver) = mpsc::unbounded_channel();
    let caller = Caller { jobs };
    CALLER
        .set(caller)
        .map_err(|_| "the NATS connection is configured already".to_owned())?;
    runtime().spawn(drive(config, receiver));
    Ok(())
}

/// Sends `jobs` to the worker hosts.
pub(crate) fn submit(jobs: impl IntoIterator<Item = Job>) {
    let Some(caller) = CALLER.get() else {
        return;
    };
    for job in jobs {
        if let Err(mpsc::error::SendError(job)) = caller.jobs.send(job) {
            job.fail(TaskError::protocol(
                job.name(),
                "the connection to the NATS server has ended".into(),
            ));
        }
    }
}

/// Connects, then publishes jobs, reads replies and watches heartbeats until the
/// program ends.
async fn drive(config: NatsConfig, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let client = match config.connect("concurrency caller").await {
        Ok(client) => client,
        Err(message) => {
            // Every task fails with why, now and later.
            while let Some(job) = jobs.recv().await {
                job.fail(TaskError::protocol(job.name(), message.clone()));
            }
            return;
        }
    };
    let inbox = client.new_inbox();
    let mut replies = match client.subscribe(format!("{inbox}.*")).await {
        Ok(replies) => replies,
        Err(error) => {
            let message = format!("cannot subscribe to the replies: {error}");
            while let Some(job) = jobs.recv().await {
                job.fail(TaskError::protocol(job.name(), message.clone()));
            }
            return;
        }
    };
    let pending: Arc<Mutex<HashMap<u64, Pending>>> = Arc::default();
    let build = build_id();
    let subject = config.task_subject();
    let silence = config.heartbeat * 2;
    let mut next_id: u64 = 0;
    let mut watch = tokio::time::interval(config.heartbeat / 4);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else { break };
                next_id += 1;
                let request = message::request(build, job.name(), job.body());
                let max = client.server_info().max_payload;
                if request.len() > max {
                    let error = TaskError::protocol(
                        job.name(),
                        format!(
                            "the request ({} bytes) exceeds the NATS server's maximum message \
                             size ({max} bytes)",
                            request.len()
                        ),
                    );
                    job.fail(error);
                    continue;
                }
                let reply = format!("{inbox}.{next_id}");
                lock(&pending).insert(next_id, Pending { job, host: None, heard: Instant::now() });
                if let Err(error) = client
                    .publish_with_reply(subject.clone(), reply, request.into())
                    .await
                    && let Some(gone) = lock(&pending).remove(&next_id)
                {
                    let name = gone.job.name();
                    gone.job.fail(TaskError::protocol(name, format!("cannot publish: {error}")));
                }
            }
            reply = replies.next() => {
                let Some(reply) = reply else { break };
                let Some(id) = reply
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|id| id.parse::<u64>().ok())
                else {
                    continue;
                };
                match message::parse_reply(&reply.payload) {
                    Some(Reply::Heartbeat { pid, host, .. }) => {
                        if let Some(entry) = lock(&pending).get_mut(&id) {
                            entry.host = Some((host.to_owned(), pid));
                            entry.heard = Instant::now();
                        }
                    }
                    Some(Reply::Answer { status, pid, payload }) => {
                        let Some(entry) = lock(&pending).remove(&id) else { continue };
                        let name = entry.job.name();
                        let ran = Ran { pid, started: 0, ended: 0 };
                        let mut wakes = Wakes::default();
                        match outcome(name, status, pid, payload) {
                            Ok(()) => entry.job.deliver(Answer::Ok(payload), ran, &mut wakes),
                            Err(error) => entry.job.deliver(Answer::Err(error), ran, &mut wakes),
                        }
                        wakes.wake();
                    }
                    None => {}
                }
            }
            _ = watch.tick() => {
                let now = Instant::now();
                let (mut cancelled, mut silent) = (Vec::new(), Vec::new());
                {
                    let mut map = lock(&pending);
                    let ended: Vec<u64> = map
                        .iter()
                        .filter(|(_, entry)| {
                            entry.job.control().is_cancelled()
                                || now.duration_since(entry.heard) > silence
                        })
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ended {
                        if let Some(entry) = map.remove(&id) {
                            if entry.job.control().is_cancelled() {
                                cancelled.push((id, entry));
                            } else {
                                silent.push(entry);
                            }
                        }
                    }
                }
                // A cancelled task's host kills the worker running it.
                for (id, entry) in cancelled {
                    if let Some((host, _)) = entry.host {
                        let reply = format!("{inbox}.{id}");
                        let _ = client.publish(config.cancel_subject(&host), reply.into()).await;
                    }
                }
                for entry in silent {
                    let name = entry.job.name();
                    let error = match entry.host {
                        // Its host went silent: lost with whatever ran there.
                        Some((_, pid)) => TaskError::crashed(name, pid, None, None),
                        None => TaskError::protocol(
                            name,
                            format!(
                                "no worker host took the task within {silence:?}: start worker \
                                 hosts on {subject} (see `process::remote::serve`)"
                            ),
                        ),
                    };
                    entry.job.fail(error);
                }
            }
        }
    }
}

/// What an answer's status means for the task `name`: `Ok` when its payload is the
/// encoded result. A host answers with the local protocol's statuses, and its own.
fn outcome(name: &'static str, status: u8, pid: u32, payload: &[u8]) -> Result<(), TaskError> {
    match status {
        message::CRASHED => {
            let (signal, exit_code) = message::parse_crash(payload).unwrap_or((None, None));
            Err(TaskError::crashed(name, pid, signal, exit_code))
        }
        message::BUILD_MISMATCH => Err(TaskError::protocol(
            name,
            format!(
                "the worker host runs another build of the program ({}; this one is {}): \
                 start worker hosts from the caller's binary",
                String::from_utf8_lossy(payload),
                build_id()
            ),
        )),
        message::FAILED => Err(TaskError::protocol(
            name,
            format!(
                "the worker host failed: {}",
                String::from_utf8_lossy(payload)
            ),
        )),
        status => status_outcome(name, status, payload, u64::MAX).map(|_| ()),
    }
}
