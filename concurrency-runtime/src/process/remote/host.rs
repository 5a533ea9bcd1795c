//! A worker host: takes requests from the task subject (in a queue group, so each
//! goes to one host), runs each in this host's own process pool (a crash fails that
//! task alone, with its signal, as locally), tells the caller it is alive while the
//! task waits or runs, and answers.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::Waker;

use futures_util::StreamExt;
use tokio::sync::Semaphore;

use super::config::NatsConfig;
use super::message;
use crate::error::{SerializationStage, TaskError, TaskErrorKind};
use crate::process::parent::{self, Answer, Control, Job, Ran, Sink};
use crate::process::protocol;
use crate::runtime::runtime;
use crate::sync::{Completion, lock};

/// How many tasks a host hands its pool at once by default: enough for the pool to
/// keep every worker busy with the next requests queued (it pipelines them), few
/// enough to bound what one host holds.
const DEFAULT_CAPACITY: usize = 256;

/// One request on this host: its body, its cancellation, and its outcome.
struct HostJob {
    body: Vec<u8>,
    control: Control,
    outcome: Completion<(Result<Vec<u8>, TaskError>, Ran)>,
}

impl Sink for HostJob {
    fn name(&self, _: usize) -> &'static str {
        "remote task"
    }

    fn body(&self, _: usize) -> &[u8] {
        &self.body
    }

    fn control(&self, _: usize) -> &Control {
        &self.control
    }

    fn deliver(&self, _: usize, answer: Answer<'_>, ran: Ran) {
        let outcome = match answer {
            Answer::Ok(bytes) => Ok(bytes.to_vec()),
            Answer::Err(error) => Err(error),
        };
        self.outcome.put((outcome, ran));
    }

    fn settle(&self, _: usize) -> Option<Waker> {
        self.outcome.take_waker()
    }
}

/// This program's build: what a task number means. The executable's own bytes,
/// hashed (FNV-1a), unless `CONCURRENCY_REMOTE_BUILD` says otherwise (for tests).
pub(crate) fn build_id() -> &'static str {
    static BUILD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUILD.get_or_init(|| {
        if let Ok(build) = std::env::var("CONCURRENCY_REMOTE_BUILD") {
            return build;
        }
        let bytes = std::env::current_exe()
            .and_then(std::fs::read)
            .unwrap_or_default();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in &bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}-{}", bytes.len())
    })
}

/// Serves the task subject until the connection ends (see [`super::serve`]).
pub(crate) fn serve(config: NatsConfig) -> Result<(), String> {
    let build = build_id();
    runtime().block_on(async move {
        let pid = std::process::id();
        let host_id = format!("h{pid}x{:x}", std::time::UNIX_EPOCH.elapsed().map_or(0, |t| t.as_nanos() as u64));
        let label = config.label.clone().unwrap_or_else(|| format!("host {pid}"));
        let client = config
            .connect(&format!("concurrency worker host {label}"))
            .await?;
        let mut tasks = client
            .queue_subscribe(config.task_subject(), format!("{}-hosts", config.prefix))
            .await
            .map_err(|error| format!("cannot subscribe to {}: {error}", config.task_subject()))?;
        let mut cancels = client
            .subscribe(config.cancel_subject(&host_id))
            .await
            .map_err(|error| format!("cannot subscribe to the cancellations: {error}"))?;
        client
            .flush()
            .await
            .map_err(|error| format!("cannot reach the server: {error}"))?;
        let running: Arc<Mutex<HashMap<String, Arc<HostJob>>>> = Arc::default();
        let capacity = config.capacity.unwrap_or(DEFAULT_CAPACITY);
        let permits = Arc::new(Semaphore::new(capacity));
        let beat = Arc::new(message::heartbeat(pid, &host_id, &label));
        let mut refused_build = false;
        eprintln!(
            "concurrency-runtime worker host `{label}` (pid {pid}) serves {} on {}",
            config.task_subject(),
            config.url
        );
        loop {
            tokio::select! {
                task = tasks.next() => {
                    let Some(task) = task else { break };
                    let Some(reply) = task.reply.clone() else {
                        continue; // nobody to answer: not a request
                    };
                    let Some(request) = message::parse_request(&task.payload) else {
                        let answer = message::answer(message::FAILED, 0, b"malformed request");
                        let _ = client.publish(reply, answer.into()).await;
                        continue;
                    };
                    if request.build != build {
                        if !refused_build {
                            refused_build = true;
                            eprintln!(
                                "concurrency-runtime worker host `{label}`: refused a request \
                                 from a caller of another build ({}; this host runs {build}): \
                                 start worker hosts from the caller's binary",
                                request.build
                            );
                        }
                        let answer = message::answer(message::BUILD_MISMATCH, pid, build.as_bytes());
                        let _ = client.publish(reply, answer.into()).await;
                        continue;
                    }
                    let job = Arc::new(HostJob {
                        body: request.body.to_vec(),
                        control: Control::default(),
                        outcome: Completion::default(),
                    });
                    lock(&running).insert(reply.to_string(), Arc::clone(&job));
                    tokio::spawn(run(
                        client.clone(),
                        reply,
                        job,
                        Arc::clone(&running),
                        Arc::clone(&permits),
                        Arc::clone(&beat),
                        config.heartbeat,
                    ));
                }
                cancel = cancels.next() => {
                    let Some(cancel) = cancel else { break };
                    if let Ok(reply) = std::str::from_utf8(&cancel.payload)
                        && let Some(job) = lock(&running).get(reply)
                    {
                        job.control.cancel();
                    }
                }
            }
        }
        Ok(())
    })
}

/// Runs one request on this host's pool, with heartbeats until it ends; answers.
async fn run(
    client: async_nats::Client,
    reply: async_nats::Subject,
    job: Arc<HostJob>,
    running: Arc<Mutex<HashMap<String, Arc<HostJob>>>>,
    permits: Arc<Semaphore>,
    beat: Arc<Vec<u8>>,
    every: std::time::Duration,
) {
    let heartbeat = || client.publish(reply.clone(), beat.as_slice().to_vec().into());
    // The caller hears of this host before the task can start (then a host lost
    // mid-task is one the caller knew).
    let _ = heartbeat().await;
    let _ = client.flush().await;
    // Waits for room on this host, saying it is alive meanwhile.
    let permit = loop {
        tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => break permit.ok(),
            () = tokio::time::sleep(every) => { let _ = heartbeat().await; }
        }
    };
    if !job.control.is_cancelled() {
        parent::submit(std::iter::once(Job {
            sink: Arc::clone(&job) as Arc<dyn Sink>,
            index: 0,
        }));
    } else {
        job.outcome
            .put((Err(TaskError::cancelled("remote task")), Ran::default()));
    }
    let (outcome, ran) = loop {
        tokio::select! {
            outcome = poll_fn(|cx| job.outcome.poll(cx)) => break outcome,
            () = tokio::time::sleep(every) => { let _ = heartbeat().await; }
        }
    };
    drop(permit);
    lock(&running).remove(reply.as_str());
    let answer = encode(outcome, ran);
    let max = client.server_info().max_payload;
    let answer = if answer.len() > max {
        let text = format!(
            "the task's result ({} bytes) exceeds the NATS server's maximum message size \
             ({max} bytes)",
            answer.len()
        );
        message::answer(message::FAILED, ran.pid, text.as_bytes())
    } else {
        answer
    };
    let _ = client.publish(reply, answer.into()).await;
}

/// The answer for what the host's pool made of a request.
fn encode(outcome: Result<Vec<u8>, TaskError>, ran: Ran) -> Vec<u8> {
    let pid = ran.pid;
    let error = match outcome {
        Ok(payload) => return message::answer(protocol::OK, pid, &payload),
        Err(error) => error,
    };
    match error.into_kind() {
        TaskErrorKind::Panicked { message } => {
            message::answer(protocol::PANICKED, pid, message.as_bytes())
        }
        TaskErrorKind::Cancelled => message::answer(protocol::CANCELLED, pid, b""),
        TaskErrorKind::Crashed {
            pid,
            signal,
            exit_code,
        } => message::answer(message::CRASHED, pid, &message::crash(signal, exit_code)),
        TaskErrorKind::Serialization {
            stage,
            message: text,
        } => {
            let status = match stage {
                SerializationStage::ArgumentsIn | SerializationStage::ArgumentsOut => {
                    protocol::ARGS_DECODE
                }
                SerializationStage::ResultOut | SerializationStage::ResultIn => {
                    protocol::RESULT_ENCODE
                }
            };
            message::answer(status, pid, text.as_bytes())
        }
        other => {
            let text = match other {
                TaskErrorKind::Worker { message } => message,
                other => format!("{other:?}"),
            };
            message::answer(message::FAILED, pid, text.as_bytes())
        }
    }
}
