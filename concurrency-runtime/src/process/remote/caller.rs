//! The caller's side: process tasks published to the task subject (or queued on the
//! at-least-once stream), each with its own reply subject under one subscription;
//! heartbeats watched, cancellations passed on, bodies and answers too large for one
//! message sent in parts.
//!
//! At most once (core request/reply): a request goes to one host of the queue group
//! and is sent again only if that host refused it unstarted (full). A task whose host
//! goes silent for twice the heartbeat interval (or that no host takes within that
//! time) fails as `Crashed` (or a `Worker` error when no host ever answered), never
//! hangs. At least once: a task whose host goes silent waits for its next delivery;
//! one delivered `max_deliveries` times fails as `Crashed` (the server's advisory
//! says so); the first answer wins, later ones are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_nats::jetstream;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::config::{Delivery, NatsConfig};
use super::host::{build_id, fetch, part_size};
use super::message::{self, Body, Reply};
use crate::error::TaskError;
use crate::process::parent::{self, Answer, Job, Ran, Wakes, status_outcome};
use crate::runtime::runtime;
use crate::sync::lock;

/// The remote side, once configured.
static CALLER: OnceLock<Caller> = OnceLock::new();

struct Caller {
    jobs: mpsc::UnboundedSender<Job>,
}
/// A request in flight: its task, its host once one spoke (its id and pid), when it
/// last did, its place in the queue (at least once), and whether a full host refused
/// it (to send again).
struct Pending {
    job: Job,
    host: Option<(String, u32)>,
    heard: Instant,
    sequence: Option<u64>,
    refused: bool,
    /// Cancelled before its host spoke, and taken out of the queue (at least once).
    withdrawn: bool,
}

type PendingMap = Arc<Mutex<HashMap<u64, Pending>>>;

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

/// Fails every task, now and later, with `message`.
async fn refuse_all(jobs: &mut mpsc::UnboundedReceiver<Job>, message: String) {
    while let Some(job) = jobs.recv().await {
        job.fail(TaskError::protocol(job.name(), message.clone()));
    }
}

/// The at-least-once queue, as the caller sees it.
struct Queue {
    context: jetstream::Context,
    stream: jetstream::stream::Stream,
}

/// The caller's connection and what it sends with.
struct Driver {
    /// The tasks not sent because full hosts refused them (or would: see `window`),
    /// oldest first: one is sent each time a task ends (a host has room then), the
    /// rest every quarter heartbeat, as far as the window allows.
    refused: Mutex<std::collections::VecDeque<u64>>,
    /// The hosts heard from, with their capacity and when.
    hosts: Mutex<HashMap<String, (u32, Instant)>>,
    client: async_nats::Client,
    config: NatsConfig,
    inbox: String,
    build: &'static str,
    pending: PendingMap,
    queue: Option<Queue>,
    /// The most bytes in one message (read once: the server's info is a clone).
    part_size: usize,
}

impl Driver {
    /// The request for task `id`: whole, or its body held here.
    fn request(&self, id: u64, job: &Job) -> Vec<u8> {
        let request = message::request(self.build, job.name(), job.body());
        if request.len() <= self.part_size {
            return request;
        }
        let subject = format!("{}.part.{id}", self.inbox);
        message::held_request(self.build, job.name(), job.body().len() as u64, &subject)
    }

    /// Sends the request of task `id` (in `pending`) to the hosts.
    async fn send(&self, id: u64) {
        let request = {
            let mut map = lock(&self.pending);
            let Some(entry) = map.get_mut(&id) else {
                return;
            };
            entry.refused = false;
            // Its silence counts from now: it may have waited here (refused, or for
            // the window) longer than a host may be silent.
            entry.heard = Instant::now();
            self.request(id, &entry.job)
        };
        let reply = format!("{}.{id}", self.inbox);
        let sent = match &self.queue {
            None => self
                .client
                .publish_with_reply(self.config.task_subject(), reply, request.into())
                .await
                .map_err(|error| format!("cannot publish: {error}")),
            Some(queue) => {
                let publish = jetstream::message::PublishMessage::build()
                    .payload(request.into())
                    .header(message::REPLY_HEADER, reply.as_str());
                match queue
                    .context
                    .send_publish(self.config.queue_subject(), publish)
                    .await
                {
                    Ok(acked) => {
                        // The server's acknowledgement, awaited apart (pipelined).
                        let pending = Arc::clone(&self.pending);
                        tokio::spawn(async move {
                            let stored = acked.await;
                            let mut map = lock(&pending);
                            match stored {
                                Ok(ack) => {
                                    if let Some(entry) = map.get_mut(&id) {
                                        entry.sequence = Some(ack.sequence);
                                    }
                                }
                                Err(error) => {
                                    if let Some(gone) = map.remove(&id) {
                                        drop(map);
                                        let name = gone.job.name();
                                        let text =
                                            format!("the queue did not take the task: {error}");
                                        gone.job.fail(TaskError::protocol(name, text));
                                    }
                                }
                            }
                        });
                        Ok(())
                    }
                    Err(error) => Err(format!("cannot queue the task: {error}")),
                }
            }
        };
        if let Err(text) = sent
            && let Some(gone) = lock(&self.pending).remove(&id)
        {
            let name = gone.job.name();
            gone.job.fail(TaskError::protocol(name, text));
        }
    }

    /// Takes a heartbeat: its host holds these tasks. Returns those to stop there
    /// (cancelled before their host spoke).
    fn heard(&self, beat: message::Heartbeat<'_>) -> Vec<u64> {
        let mut stop = Vec::new();
        let now = Instant::now();
        lock(&self.hosts).insert(beat.host.to_owned(), (beat.capacity, now));
        let mut map = lock(&self.pending);
        for id in beat.ids {
            let Some(entry) = map.get_mut(&id) else {
                continue;
            };
            entry.host = Some((beat.host.to_owned(), beat.pid));
            entry.heard = now;
            if entry.job.control().is_cancelled() {
                map.remove(&id);
                stop.push(id);
            }
        }
        stop
    }

    /// At most once, how many tasks the hosts heard from lately hold in all (their
    /// capacities): the caller sends no more at once, so that a burst waits here
    /// instead of being refused by full hosts. `None` before any host spoke.
    fn window(&self) -> Option<usize> {
        if self.queue.is_some() {
            return None; // hosts pull what they have room for
        }
        let recent = self.config.heartbeat * 2;
        let mut hosts = lock(&self.hosts);
        hosts.retain(|_, (_, heard)| heard.elapsed() <= recent);
        (!hosts.is_empty()).then(|| hosts.values().map(|(capacity, _)| *capacity as usize).sum())
    }

    /// How many tasks are out with the hosts (sent and not refused).
    fn out(&self) -> usize {
        let refused = lock(&self.refused).len();
        lock(&self.pending).len().saturating_sub(refused)
    }

    /// Takes a new task `id`: sends it, or keeps it here while the window is full.
    async fn take(&self, id: u64, entry: Pending) {
        let full = self.window().is_some_and(|window| self.out() >= window);
        lock(&self.pending).insert(
            id,
            Pending {
                refused: full,
                ..entry
            },
        );
        if full {
            lock(&self.refused).push_back(id);
        } else {
            self.send(id).await;
        }
    }

    /// Takes what a host answered for task `id`; a refused task to send again when a
    /// task ended (a host has room then).
    fn reply(&self, id: u64, reply: Reply<'_>) -> Option<u64> {
        let ended = reply.status != message::BUSY;
        self.answered(id, reply);
        if !ended {
            return None;
        }
        let mut refused = lock(&self.refused);
        let map = lock(&self.pending);
        while let Some(next) = refused.pop_front() {
            if let Some(entry) = map.get(&next)
                && entry.refused
            {
                return Some(next);
            }
        }
        None
    }

    /// Tells `host` to stop task `id`.
    async fn cancel(&self, host: &str, id: u64) {
        let reply = format!("{}.{id}", self.inbox);
        let _ = self
            .client
            .publish(self.config.cancel_subject(host), reply.into())
            .await;
    }

    /// Takes a refusal or an answer for task `id`.
    fn answered(&self, id: u64, reply: Reply<'_>) {
        match reply {
            Reply {
                status: message::BUSY,
                ..
            } => {
                let refused = match lock(&self.pending).get_mut(&id) {
                    Some(entry) => {
                        entry.refused = true;
                        entry.heard = Instant::now();
                        true
                    }
                    None => false,
                };
                if refused {
                    lock(&self.refused).push_back(id);
                }
            }
            Reply {
                status,
                pid,
                payload: Body::Inline(payload),
            } => {
                let Some(entry) = lock(&self.pending).remove(&id) else {
                    return; // answered already (a second delivery) or given up
                };
                deliver(&entry.job, status, pid, payload);
            }
            Reply {
                status,
                pid,
                payload: Body::Held { length, subject },
            } => {
                let Some(entry) = lock(&self.pending).remove(&id) else {
                    return;
                };
                let (client, subject) = (self.client.clone(), subject.to_owned());
                let patience = self.config.heartbeat * 2;
                let host_pid = entry.host.as_ref().map_or(pid, |(_, pid)| *pid);
                tokio::spawn(async move {
                    let limit = parent::max_frame_bytes();
                    match fetch(&client, &subject, length, limit, patience).await {
                        Ok(payload) => deliver(&entry.job, status, pid, &payload),
                        Err(_) if length > limit => {
                            let name = entry.job.name();
                            let what = format!("the worker's response ({length} bytes)");
                            entry.job.fail(parent::too_large(name, &what, limit));
                        }
                        // The host went while sending it: lost with it.
                        Err(_) => {
                            let name = entry.job.name();
                            entry
                                .job
                                .fail(TaskError::crashed(name, host_pid, None, None));
                        }
                    }
                });
            }
        }
    }

    /// Answers a host's request for a part of task `id`'s body.
    async fn part(&self, id: Option<u64>, request: async_nats::Message) {
        let Some(reply) = request.reply else { return };
        let part = {
            let map = lock(&self.pending);
            let body = id.and_then(|id| map.get(&id)).map(|entry| entry.job.body());
            message::part(body, &request.payload, self.part_size)
        };
        let _ = self.client.publish(reply, part.into()).await;
    }

    /// Every quarter heartbeat: passes cancellations on, sends refused requests
    /// again, and gives up on tasks whose hosts went silent (at most once).
    async fn watch(&self) {
        let now = Instant::now();
        let silence = self.config.heartbeat * 2;
        let at_least_once = self.queue.is_some();
        let (mut cancelled, mut silent, mut again) = (Vec::new(), Vec::new(), Vec::new());
        let mut withdraw = Vec::new();
        {
            let mut map = lock(&self.pending);
            let mut ended = Vec::new();
            for (id, entry) in map.iter_mut() {
                if entry.job.control().is_cancelled() {
                    let quiet = now.duration_since(entry.heard) > silence;
                    if entry.host.is_some() || entry.refused || quiet {
                        ended.push(*id);
                    } else if !entry.withdrawn && entry.sequence.is_some() {
                        // Out of the queue, so that no host takes it from now on;
                        // kept until a host that took it already speaks.
                        entry.withdrawn = true;
                        withdraw.extend(entry.sequence);
                    }
                } else if entry.refused {
                    again.push(*id);
                } else if now.duration_since(entry.heard) > silence {
                    if at_least_once {
                        // Its host is gone; the queue delivers it again (the host is
                        // kept to name it if the server gives up on the task).
                        entry.heard = now;
                    } else {
                        ended.push(*id);
                    }
                }
            }
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
        // The oldest first, as far as the window allows.
        let room = self
            .window()
            .map_or(usize::MAX, |window| window.saturating_sub(self.out()));
        let again: std::collections::HashSet<u64> = again.into_iter().collect();
        let again: Vec<u64> = {
            let mut refused = lock(&self.refused);
            let mut sent = Vec::new();
            refused.retain(|id| {
                if again.contains(id) && sent.len() < room {
                    sent.push(*id);
                    false
                } else {
                    true
                }
            });
            sent
        };
        for id in again {
            self.send(id).await;
        }
        // A cancelled task's host kills the worker running it; a queued one leaves
        // the queue.
        for (id, entry) in cancelled {
            if let Some((host, _)) = &entry.host {
                self.cancel(host, id).await;
            }
            if let (Some(queue), Some(sequence), false) =
                (&self.queue, entry.sequence, entry.withdrawn)
            {
                let _ = queue.stream.delete_message(sequence).await;
            }
        }
        if let Some(queue) = &self.queue {
            for sequence in withdraw {
                let _ = queue.stream.delete_message(sequence).await;
            }
        }
        let subject = self.config.task_subject();
        for entry in silent {
            let name = entry.job.name();
            let error = match entry.host {
                // Its host went silent: lost with whatever ran there.
                Some((_, pid)) => TaskError::crashed(name, pid, None, None),
                None => TaskError::protocol(
                    name,
                    format!(
                        "no worker host took the task within {silence:?} (or the one that \
                         took it was lost at once): start worker hosts on {subject} (see \
                         `process::remote::serve`)"
                    ),
                ),
            };
            entry.job.fail(error);
        }
    }

    /// The server gave up on the queued task at `sequence` (delivered
    /// `max_deliveries` times, its host lost each time): it fails as `Crashed`.
    async fn given_up(&self, sequence: u64) {
        let gone = {
            let mut map = lock(&self.pending);
            let id = map
                .iter()
                .find(|(_, entry)| entry.sequence == Some(sequence))
                .map(|(id, _)| *id);
            id.and_then(|id| map.remove(&id))
        };
        if let Some(queue) = &self.queue {
            let _ = queue.stream.delete_message(sequence).await;
        }
        if let Some(entry) = gone {
            let name = entry.job.name();
            let pid = entry.host.map_or(0, |(_, pid)| pid);
            entry.job.fail(TaskError::crashed(name, pid, None, None));
        }
    }
}

/// Delivers what a host answered for `job`.
fn deliver(job: &Job, status: u8, pid: u32, payload: &[u8]) {
    let name = job.name();
    let ran = Ran {
        pid,
        started: 0,
        ended: 0,
    };
    let mut wakes = Wakes::default();
    match outcome(name, status, pid, payload) {
        Ok(()) => job.deliver(Answer::Ok(payload), ran, &mut wakes),
        Err(error) => job.deliver(Answer::Err(error), ran, &mut wakes),
    }
    wakes.wake();
}

/// The last number in a reply subject (`INBOX.N`, `INBOX.part.N`).
fn task_id(subject: &str) -> Option<u64> {
    subject.rsplit('.').next()?.parse().ok()
}

/// The stream sequence in a max-deliveries advisory (JSON: `"stream_seq":N`).
fn advisory_sequence(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = &text[text.find("\"stream_seq\"")? + "\"stream_seq\"".len()..];
    let digits: String = rest
        .trim_start_matches([' ', ':'])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Connects, then publishes jobs, reads replies and watches heartbeats until the
/// program ends.
async fn drive(config: NatsConfig, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let client = match config.connect("concurrency caller").await {
        Ok(client) => client,
        Err(message) => return refuse_all(&mut jobs, message).await,
    };
    let inbox = client.new_inbox().to_string();
    let subscriptions = async {
        let replies = client.subscribe(format!("{inbox}.*")).await?;
        let parts = client.subscribe(format!("{inbox}.part.*")).await?;
        Ok::<_, async_nats::SubscribeError>((replies, parts))
    };
    let (mut replies, mut parts) = match subscriptions.await {
        Ok(subscriptions) => subscriptions,
        Err(error) => {
            let message = format!("cannot subscribe to the replies: {error}");
            return refuse_all(&mut jobs, message).await;
        }
    };
    let (queue, mut advisories) = match config.delivery {
        Delivery::AtMostOnce => (None, None),
        Delivery::AtLeastOnce => {
            let context = jetstream::new(client.clone());
            let stream = match context.get_or_create_stream(config.stream_config()).await {
                Ok(stream) => stream,
                Err(error) => {
                    let message = format!(
                        "cannot open the at-least-once queue (the JetStream stream {}; is \
                         the server started with JetStream, `nats-server -js`?): {error}",
                        config.stream_name()
                    );
                    return refuse_all(&mut jobs, message).await;
                }
            };
            let advisory = format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
                config.stream_name(),
                config.consumer_name()
            );
            let advisories = client.subscribe(advisory).await.ok();
            (Some(Queue { context, stream }), advisories)
        }
    };
    let driver = Driver {
        refused: Mutex::default(),
        hosts: Mutex::default(),
        part_size: part_size(&client),
        client,
        inbox,
        build: build_id(),
        pending: Arc::default(),
        queue,
        config,
    };
    let mut next_id: u64 = 0;
    let mut watch = tokio::time::interval(driver.config.heartbeat / 4);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else { break };
                next_id += 1;
                let entry = Pending {
                    job,
                    host: None,
                    heard: Instant::now(),
                    sequence: None,
                    refused: false,
                    withdrawn: false,
                };
                driver.take(next_id, entry).await;
            }
            reply = replies.next() => {
                let Some(reply) = reply else { break };
                if reply.subject.ends_with(".beat") {
                    if let Some(beat) = message::parse_heartbeat(&reply.payload) {
                        let host = beat.host.to_owned();
                        for id in driver.heard(beat) {
                            driver.cancel(&host, id).await;
                        }
                    }
                } else if let (Some(id), Some(parsed)) =
                    (task_id(&reply.subject), message::parse_reply(&reply.payload))
                    && let Some(again) = driver.reply(id, parsed)
                {
                    driver.send(again).await;
                }
            }
            part = parts.next() => {
                let Some(part) = part else { break };
                driver.part(task_id(&part.subject), part).await;
            }
            advisory = async {
                match advisories.as_mut() {
                    Some(advisories) => advisories.next().await,
                    None => std::future::pending().await,
                }
            } => {
                match advisory {
                    Some(advisory) => {
                        if let Some(sequence) = advisory_sequence(&advisory.payload) {
                            driver.given_up(sequence).await;
                        }
                    }
                    None => advisories = None,
                }
            }
            _ = watch.tick() => driver.watch().await,
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
