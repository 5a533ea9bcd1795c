//! A worker host: takes requests from the task subject (in a queue group, so each
//! goes to one host), runs each in this host's own process pool (a crash fails that
//! task alone, with its signal, as locally), tells the caller it is alive while the
//! task waits or runs, and answers.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// How long a task runs before its host's first heartbeat: short beside the
/// heartbeat interval, long beside a tiny task's run.
const FIRST_BEAT: Duration = Duration::from_millis(2);

/// One request on this host: its body, its cancellation, and its outcome.
struct HostJob {
    /// Set before the job goes to the pool (fetched first if its caller held it).
    body: std::sync::OnceLock<bytes::Bytes>,
    control: Control,
    /// The answer message when the task returned, or why it did not.
    outcome: Completion<(Result<Vec<u8>, TaskError>, Ran)>,
}

impl Sink for HostJob {
    fn name(&self, _: usize) -> &'static str {
        "remote task"
    }

    fn body(&self, _: usize) -> &[u8] {
        self.body.get().map_or(&[], |body| body)
    }

    fn control(&self, _: usize) -> &Control {
        &self.control
    }

    fn deliver(&self, _: usize, answer: Answer<'_>, ran: Ran) {
        let outcome = match answer {
            // The whole answer message, made here: one copy of the result.
            Answer::Ok(bytes) => Ok(message::answer(protocol::OK, ran.pid, bytes)),
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

/// What a host holds: the tasks it runs (by reply subject, for cancellations), and
/// the answers too large for one message until their callers fetch them.
#[derive(Default)]
struct Held {
    running: Mutex<HashMap<String, Running>>,
    answers: Mutex<HashMap<u64, HeldAnswer>>,
    next_answer: AtomicU64,
}

/// An answer too large for one message, and since when it waits for its caller.
struct HeldAnswer {
    bytes: Arc<Vec<u8>>,
    since: Instant,
}

/// A task this host holds, and whether its caller heard of it yet.
struct Running {
    job: Arc<HostJob>,
    announced: bool,
}

/// What every request on this host shares.
struct Shared {
    client: async_nats::Client,
    build: &'static str,
    pid: u32,
    label: String,
    beat: Vec<u8>,
    every: Duration,
    part_subject: String,
    /// The most bytes in one message (read once: the server's info is a clone).
    part_size: usize,
    held: Held,
    /// Told when a task comes (the heartbeats sleep while the host holds none).
    arrived: tokio::sync::Notify,
    refused_build: AtomicBool,
}

/// A request taken from the task subject or from the queue.
struct Taken {
    reply: async_nats::Subject,
    payload: bytes::Bytes,
    /// The queue's message, acknowledged once the caller has its answer.
    queued: Option<jetstream::Message>,
}

/// Serves the task subject and the queue until the connection ends (see
/// [`super::serve`]).
pub(crate) fn serve(config: NatsConfig) -> Result<(), String> {
    // On the runtime's threads, not this one: the connection's tasks, this loop and
    // the tasks it starts then hand work to each other without waking a thread.
    let serving = runtime().spawn(serve_on(config));
    runtime()
        .block_on(serving)
        .unwrap_or_else(|error| Err(format!("the worker host stopped: {error}")))
}

/// `serve`'s loop, a task of the embedded runtime.
async fn serve_on(config: NatsConfig) -> Result<(), String> {
    let build = build_id();
    let pid = std::process::id();
    let host_id = format!(
        "h{pid}x{:x}",
        std::time::UNIX_EPOCH
            .elapsed()
            .map_or(0, |t| t.as_nanos() as u64)
    );
    let label = config
        .label
        .clone()
        .unwrap_or_else(|| format!("host {pid}"));
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
    let part_subject = config.part_subject(&host_id);
    let mut parts = client
        .subscribe(format!("{part_subject}.*"))
        .await
        .map_err(|error| format!("cannot subscribe to {part_subject}: {error}"))?;
    client
        .flush()
        .await
        .map_err(|error| format!("cannot reach the server: {error}"))?;
    let capacity = config.capacity.unwrap_or(DEFAULT_CAPACITY);
    let permits = Arc::new(Semaphore::new(capacity));
    let shared = Arc::new(Shared {
        client: client.clone(),
        build,
        pid,
        beat: message::heartbeat(
            pid,
            u32::try_from(capacity).unwrap_or(u32::MAX),
            &host_id,
            &label,
        ),
        label,
        every: config.heartbeat,
        part_subject,
        part_size: part_size(&client),
        held: Held::default(),
        arrived: tokio::sync::Notify::new(),
        refused_build: AtomicBool::new(false),
    });
    tokio::spawn(heartbeats(Arc::clone(&shared)));
    let queue = match queue_consumer(&client, &config).await {
        Ok(consumer) => {
            tokio::spawn(pull(
                consumer,
                Arc::clone(&shared),
                Arc::clone(&permits),
                capacity,
            ));
            format!(" and the queue {}", config.queue_subject())
        }
        Err(error) => {
            eprintln!(
                "concurrency-runtime worker host `{}`: no at-least-once queue ({error}); \
                 serving at-most-once requests only",
                shared.label
            );
            String::new()
        }
    };
    eprintln!(
        "concurrency-runtime worker host `{}` (pid {pid}) serves {}{queue} on {}",
        shared.label,
        config.task_subject(),
        config.url
    );
    let keep = (config.heartbeat * 10).max(Duration::from_secs(30));
    let mut sweep = tokio::time::interval(config.heartbeat);
    loop {
        tokio::select! {
            task = tasks.next() => {
                let Some(task) = task else { break };
                let Some(reply) = task.reply else {
                    continue; // nobody to answer: not a request
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    // Full: the caller sends it again, maybe to another host.
                    let answer = message::answer(message::BUSY, pid, b"");
                    let _ = client.publish(reply, answer.into()).await;
                    continue;
                };
                let taken = Taken { reply, payload: task.payload, queued: None };
                accept(&shared, taken, permit).await;
            }
            cancel = cancels.next() => {
                let Some(cancel) = cancel else { break };
                if let Ok(reply) = std::str::from_utf8(&cancel.payload)
                    && let Some(running) = lock(&shared.held.running).get(reply)
                {
                    running.job.control.cancel();
                }
            }
            part = parts.next() => {
                let Some(part) = part else { break };
                serve_part(&shared, &part).await;
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                lock(&shared.held.answers).retain(|_, held| now.duration_since(held.since) < keep);
            }
        }
    }
    Ok(())
}

/// The hosts' consumer of the at-least-once queue (made, with the stream, if
/// missing): a task not acknowledged within twice the heartbeat (its host sends
/// progress every heartbeat) goes to another host.
async fn queue_consumer(
    client: &async_nats::Client,
    config: &NatsConfig,
) -> Result<jetstream::consumer::Consumer<pull::Config>, String> {
    let context = jetstream::new(client.clone());
    let stream = context
        .get_or_create_stream(config.stream_config())
        .await
        .map_err(|error| format!("cannot open the stream {}: {error}", config.stream_name()))?;
    let consumer = pull::Config {
        durable_name: Some(config.consumer_name()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: config.heartbeat * 2,
        max_deliver: i64::from(config.max_deliveries),
        max_ack_pending: 1 << 20,
        ..Default::default()
    };
    stream
        .get_or_create_consumer(&config.consumer_name(), consumer)
        .await
        .map_err(|error| {
            format!(
                "cannot open the consumer {}: {error}",
                config.consumer_name()
            )
        })
}

/// Takes tasks from the queue, only as many as this host has room for. Room is
/// taken when a task comes, not while waiting for one (requests on the task subject
/// share it); a task that finds none goes back to the queue for another host.
async fn pull(
    consumer: jetstream::consumer::Consumer<pull::Config>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    capacity: usize,
) {
    let wait = shared.every.max(Duration::from_millis(100));
    loop {
        // Until there is room for one at least.
        match permits.acquire().await {
            Ok(permit) => drop(permit),
            Err(_) => return,
        }
        let room = permits.available_permits().clamp(1, capacity);
        let batch = consumer
            .fetch()
            .max_messages(room)
            .expires(wait * 5)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(_) => {
                // The server is away (restarting, say): ask again later.
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        while let Some(message) = batch.next().await {
            let Ok(message) = message else { break };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                let _ = message.ack_with(AckKind::Nak(None)).await;
                continue;
            };
            let reply = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(message::REPLY_HEADER))
                .and_then(|reply| async_nats::Subject::from_utf8(reply.as_str().to_owned()).ok());
            let Some(reply) = reply else {
                // Not a request: nobody to answer, and no use in another delivery.
                let _ = message.ack_with(AckKind::Term).await;
                continue;
            };
            let taken = Taken {
                reply,
                payload: message.payload.clone(),
                queued: Some(message),
            };
            accept(&shared, taken, permit).await;
        }
    }
}

/// Checks a request and starts it: a job of this host's pool, watched by its own
/// task; or answers at once why not.
async fn accept(shared: &Arc<Shared>, taken: Taken, permit: OwnedSemaphorePermit) {
    let Some(request) = message::parse_request(&taken.payload) else {
        let answer = message::answer(message::FAILED, 0, b"malformed request");
        finish(shared, taken, answer).await;
        return;
    };
    if request.build != shared.build {
        if !shared.refused_build.swap(true, Ordering::Relaxed) {
            eprintln!(
                "concurrency-runtime worker host `{}`: refused a request from a caller of \
                 another build ({}; this host runs {}): start worker hosts from the caller's \
                 binary",
                shared.label, request.build, shared.build
            );
        }
        let answer = message::answer(message::BUILD_MISMATCH, shared.pid, shared.build.as_bytes());
        finish(shared, taken, answer).await;
        return;
    }
    let job = Arc::new(HostJob {
        body: std::sync::OnceLock::new(),
        control: Control::default(),
        outcome: Completion::default(),
    });
    let held = match request.body {
        message::Body::Inline(body) => {
            // The message's own bytes: no copy.
            let _ = job.body.set(taken.payload.slice_ref(body));
            None
        }
        message::Body::Held { length, subject } => Some((length, subject.to_owned())),
    };
    let running = Running {
        job: Arc::clone(&job),
        announced: false,
    };
    lock(&shared.held.running).insert(taken.reply.to_string(), running);
    if held.is_none() {
        // To the pool at once (a body held by the caller is fetched first, in `run`).
        start(&job);
    }
    shared.arrived.notify_one();
    tokio::spawn(run(Arc::clone(shared), taken, job, held, permit));
}

/// Hands `job` to this host's pool, unless it was cancelled already.
fn start(job: &Arc<HostJob>) {
    if !job.control.is_cancelled() {
        parent::submit(std::iter::once(Job {
            sink: Arc::clone(job) as Arc<dyn Sink>,
            index: 0,
        }));
    } else {
        job.outcome
            .put((Err(TaskError::cancelled("remote task")), Ran::default()));
    }
}

/// Runs one request on this host's pool (fetching its body first if its caller
/// holds it, then starting it), with heartbeats until it ends; answers.
async fn run(
    shared: Arc<Shared>,
    taken: Taken,
    job: Arc<HostJob>,
    held: Option<(u64, String)>,
    permit: OwnedSemaphorePermit,
) {
    if let Some((length, subject)) = held {
        match fetch(
            &shared.client,
            &subject,
            length,
            parent::max_frame_bytes(),
            shared.every * 2,
        )
        .await
        {
            Ok(body) => {
                let _ = job.body.set(body.into());
            }
            Err(why) => {
                let text = format!("cannot fetch the task's arguments from its caller: {why}");
                drop(permit);
                lock(&shared.held.running).remove(taken.reply.as_str());
                finish(
                    &shared,
                    taken,
                    message::answer(message::FAILED, 0, text.as_bytes()),
                )
                .await;
                return;
            }
        }
        start(&job);
    }
    // Its caller hears of it from `heartbeats`; the queue, from here: progress every
    // heartbeat interval, so that it is not delivered to another host meanwhile.
    let (outcome, ran) = loop {
        tokio::select! {
            outcome = poll_fn(|cx| job.outcome.poll(cx)) => break outcome,
            () = tokio::time::sleep(shared.every) => {
                if let Some(queued) = &taken.queued {
                    let _ = queued.ack_with(AckKind::Progress).await;
                }
            }
        }
    };
    drop(permit);
    lock(&shared.held.running).remove(taken.reply.as_str());
    let answer = encode(outcome, ran);
    let answer = if answer.len() > shared.part_size {
        // Too large for one message: held here until the caller fetches it.
        let key = shared.held.next_answer.fetch_add(1, Ordering::Relaxed);
        let subject = format!("{}.{key}", shared.part_subject);
        let (status, pid) = (answer[4], ran.pid);
        let payload = answer[9..].to_vec();
        let length = payload.len() as u64;
        let held = HeldAnswer {
            bytes: Arc::new(payload),
            since: Instant::now(),
        };
        lock(&shared.held.answers).insert(key, held);
        message::held_answer(status, pid, length, &subject)
    } else {
        answer
    };
    finish(&shared, taken, answer).await;
}

/// Tells each caller which of its tasks this host holds: the new ones within
/// `FIRST_BEAT` (a task that ends sooner is answered without a heartbeat), all of them
/// every heartbeat interval. One message per caller, however many tasks.
async fn heartbeats(shared: Arc<Shared>) {
    let most = (shared.part_size / 8).max(1);
    let mut last_all = Instant::now();
    loop {
        if lock(&shared.held.running).is_empty() {
            shared.arrived.notified().await;
        }
        tokio::time::sleep(FIRST_BEAT).await;
        let all = last_all.elapsed() >= shared.every;
        if all {
            last_all = Instant::now();
        }
        let mut by_caller: HashMap<String, Vec<u64>> = HashMap::new();
        for (reply, running) in lock(&shared.held.running).iter_mut() {
            if all || !running.announced {
                running.announced = true;
                if let Some((inbox, id)) = reply.rsplit_once('.')
                    && let Ok(id) = id.parse::<u64>()
                {
                    by_caller.entry(inbox.to_owned()).or_default().push(id);
                }
            }
        }
        for (inbox, ids) in by_caller {
            for ids in ids.chunks(most) {
                let beat = message::beats(&shared.beat, ids);
                let _ = shared
                    .client
                    .publish(format!("{inbox}.beat"), beat.into())
                    .await;
            }
        }
    }
}

/// Sends `answer` to the caller; a queued task then leaves the queue.
async fn finish(shared: &Shared, taken: Taken, answer: Vec<u8>) {
    let _ = shared.client.publish(taken.reply, answer.into()).await;
    if let Some(queued) = taken.queued {
        // After the answer on the same connection: the server sees them in order.
        let _ = queued.ack().await;
    }
}

/// Answers a caller's request for a part of an answer held here; the answer is
/// dropped once its last byte went.
async fn serve_part(shared: &Shared, request: &async_nats::Message) {
    let Some(reply) = request.reply.clone() else {
        return;
    };
    let key = request
        .subject
        .rsplit('.')
        .next()
        .and_then(|key| key.parse::<u64>().ok());
    let held = key.and_then(|key| {
        lock(&shared.held.answers)
            .get(&key)
            .map(|held| Arc::clone(&held.bytes))
    });
    let part = message::part(
        held.as_deref().map(Vec::as_slice),
        &request.payload,
        shared.part_size,
    );
    if let (Some(key), Some(bytes), Some(chunk)) = (key, &held, message::parse_part(&part))
        && request.payload.len() == 8
    {
        let offset = u64::from_le_bytes(request.payload[..8].try_into().unwrap_or_default());
        if offset as usize + chunk.len() >= bytes.len() {
            lock(&shared.held.answers).remove(&key);
        }
    }
    let _ = shared.client.publish(reply, part.into()).await;
}

/// How many bytes go in one message on this connection, leaving room for headers.
pub(crate) fn part_size(client: &async_nats::Client) -> usize {
    client
        .server_info()
        .max_payload
        .saturating_sub(4096)
        .max(1024)
}

/// Fetches the `length` bytes held at `subject`, part by part (each request within
/// `patience`); refuses more than `limit`.
pub(crate) async fn fetch(
    client: &async_nats::Client,
    subject: &str,
    length: u64,
    limit: u64,
    patience: Duration,
) -> Result<Vec<u8>, String> {
    if length > limit {
        return Err(format!(
            "{length} bytes exceed the maximum frame size of {limit} bytes"
        ));
    }
    let length = usize::try_from(length).map_err(|_| "too large for this machine".to_owned())?;
    // Room for what came, not for what was claimed (the holder may send nothing).
    let mut bytes = Vec::with_capacity(length.min(16 << 20));
    while bytes.len() < length {
        let offset = (bytes.len() as u64).to_le_bytes();
        let request = async_nats::Request::new()
            .payload(offset.to_vec().into())
            .timeout(Some(patience));
        let answer = client
            .send_request(subject.to_owned(), request)
            .await
            .map_err(|error| format!("no answer from {subject}: {error}"))?;
        let chunk = message::parse_part(&answer.payload)
            .ok_or_else(|| format!("{subject} holds nothing at byte {}", bytes.len()))?;
        if chunk.len() > length - bytes.len() {
            return Err(format!("{subject} sent more than {length} bytes"));
        }
        bytes.extend_from_slice(chunk);
    }
    Ok(bytes)
}

/// The answer for what the host's pool made of a request (an `Ok` is the answer
/// message already).
fn encode(outcome: Result<Vec<u8>, TaskError>, ran: Ran) -> Vec<u8> {
    let pid = ran.pid;
    let error = match outcome {
        Ok(answer) => return answer,
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
