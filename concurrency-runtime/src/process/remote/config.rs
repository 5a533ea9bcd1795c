//! How to reach the broker, and as whom.

use std::path::PathBuf;
use std::time::Duration;

/// Where process tasks go when they run on other hosts: a NATS server, its
/// credentials and TLS settings, the subjects' prefix, and how often a worker host
/// says it is alive. The caller (`process::configure(PoolConfig::default().nats(..))`)
/// and every worker host ([`serve`](super::serve)) use the same settings.
///
/// Anyone who can publish on the task subject can make a worker host run the
/// program's registered tasks on arguments of their choosing: run the server with
/// authentication required (a token, a user and password, or an nkey credentials
/// file), and TLS between hosts.
///
/// ```
/// use std::time::Duration;
/// use concurrency_runtime::process::remote::NatsConfig;
///
/// let config = NatsConfig::new("nats://127.0.0.1:4222")
///     .token("s3cret")
///     .heartbeat(Duration::from_millis(500))
///     .label("rack-7");
/// assert_eq!(config.url(), "nats://127.0.0.1:4222");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    pub(crate) url: String,
    pub(crate) auth: Auth,
    pub(crate) require_tls: bool,
    pub(crate) root_certificates: Vec<PathBuf>,
    pub(crate) prefix: String,
    pub(crate) heartbeat: Duration,
    pub(crate) label: Option<String>,
    pub(crate) capacity: Option<usize>,
    pub(crate) delivery: Delivery,
    pub(crate) max_deliveries: u32,
}

/// How a caller's process tasks reach the worker hosts (set with
/// [`NatsConfig::delivery`]; every worker host serves both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Core NATS request/reply: each task runs at most once. A task whose worker
    /// host is lost fails as `Crashed` within twice the heartbeat, as a crash of a
    /// local worker does. The default: the lowest latency, and nothing is stored.
    #[default]
    AtMostOnce,
    /// A JetStream work queue (the stream `PREFIX_tasks`, stored on the server's
    /// disk): a task whose worker host is lost (or whose broker restarts) is
    /// delivered again, to another host, and the caller gets exactly one result per
    /// task even when its body ran twice. A task waits in the queue until a host
    /// takes it (bound that with the task's `timeout`); one that lost its host
    /// [`NatsConfig::max_deliveries`] times fails as `Crashed`. Choose it for work
    /// that is safe to run twice and must not be lost with a machine.
    AtLeastOnce,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    None,
    Token(String),
    UserPassword(String, String),
    CredentialsFile(PathBuf),
}

impl NatsConfig {
    /// The server at `url` (`nats://host:port`, or `tls://` for TLS), without
    /// credentials, subjects under `concurrency`, a heartbeat each second.
    pub fn new(url: impl Into<String>) -> Self {
        NatsConfig {
            url: url.into(),
            auth: Auth::None,
            require_tls: false,
            root_certificates: Vec::new(),
            prefix: "concurrency".to_owned(),
            heartbeat: Duration::from_secs(1),
            label: None,
            capacity: None,
            delivery: Delivery::AtMostOnce,
            max_deliveries: 5,
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Token(token.into());
        self
    }

    /// Authenticates with a user and password.
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Auth::UserPassword(user.into(), password.into());
        self
    }

    /// Authenticates with an nkey/JWT credentials file (`.creds`).
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth = Auth::CredentialsFile(path.into());
        self
    }

    /// Refuses to talk to the server without TLS.
    pub fn require_tls(mut self, required: bool) -> Self {
        self.require_tls = required;
        self
    }

    /// Trusts the certificate authority in `path` (PEM) for the server's TLS
    /// certificate.
    pub fn root_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificates.push(path.into());
        self
    }

    /// The subjects' prefix (default `concurrency`): tasks go to `PREFIX.tasks`.
    /// Programs that share a server keep apart with different prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How often a worker host tells a caller which of its tasks it holds (default
    /// one second; one message per caller, and a task is first told of 2 ms after it
    /// comes). At most once, a caller that hears nothing of a task for twice this long
    /// reports it as crashed: its host is gone. At least once, a host's task that is
    /// not acknowledged within twice this long goes to another host.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval.max(Duration::from_millis(10));
        self
    }

    /// A worker host's name in errors and placement reports (default: the host name
    /// and pid).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// How many tasks a worker host holds at once, running or queued in its local
    /// pool (default 256: the pool runs as many as it has workers and keeps the rest
    /// queued, so that no worker waits for the network). A host takes no more: with
    /// [`Delivery::AtLeastOnce`] it fetches from the queue only as many tasks as it
    /// has room for, so that a slow host leaves the rest to the others; with
    /// [`Delivery::AtMostOnce`] it refuses a request beyond it, and the caller sends
    /// that request again (to any host) when one of its tasks ends, or a quarter of a
    /// heartbeat later. Hosts say their capacity in their heartbeats, and a caller
    /// sends no more at once than the hosts it heard from lately hold in all.
    pub fn capacity(mut self, tasks: usize) -> Self {
        self.capacity = Some(tasks.max(1));
        self
    }

    /// How the caller's tasks reach the worker hosts (default
    /// [`Delivery::AtMostOnce`]). A worker host serves both.
    ///
    /// ```
    /// use concurrency_runtime::process::remote::{Delivery, NatsConfig};
    ///
    /// let config = NatsConfig::new("nats://127.0.0.1:4222").delivery(Delivery::AtLeastOnce);
    /// # let _ = config;
    /// ```
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// With [`Delivery::AtLeastOnce`], how many times a task is delivered to a
    /// worker host before the caller gives up on it as `Crashed` (default 5; each
    /// time, its host was lost while running it). Set on the worker hosts, which
    /// make the queue's consumer.
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.max_deliveries = deliveries.max(1);
        self
    }

    pub(crate) fn task_subject(&self) -> String {
        format!("{}.tasks", self.prefix)
    }

    pub(crate) fn cancel_subject(&self, host: &str) -> String {
        format!("{}.cancel.{host}", self.prefix)
    }

    /// Where a host serves the parts of an answer too large for one message.
    pub(crate) fn part_subject(&self, host: &str) -> String {
        format!("{}.part.{host}", self.prefix)
    }

    /// The subject of the at-least-once queue.
    pub(crate) fn queue_subject(&self) -> String {
        format!("{}.queue", self.prefix)
    }

    /// The JetStream stream that holds the at-least-once queue (a stream's name
    /// cannot hold `.`, `*`, `>` or white space).
    pub(crate) fn stream_name(&self) -> String {
        let name: String = self
            .prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{name}_tasks")
    }

    /// The hosts' shared consumer of the queue.
    pub(crate) fn consumer_name(&self) -> String {
        format!("{}_hosts", self.stream_name().trim_end_matches("_tasks"))
    }

    /// The stream's settings: a work queue on disk (a task leaves it when a host
    /// acknowledges it).
    pub(crate) fn stream_config(&self) -> async_nats::jetstream::stream::Config {
        use async_nats::jetstream::stream;
        stream::Config {
            name: self.stream_name(),
            subjects: vec![self.queue_subject()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        }
    }

    /// Connects with these settings; `name` names the connection on the server.
    pub(crate) async fn connect(&self, name: &str) -> Result<async_nats::Client, String> {
        let mut options = match &self.auth {
            Auth::None => async_nats::ConnectOptions::new(),
            Auth::Token(token) => async_nats::ConnectOptions::with_token(token.clone()),
            Auth::UserPassword(user, password) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Auth::CredentialsFile(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?,
        };
        for path in &self.root_certificates {
            options = options.add_root_certificates(path.clone());
        }
        options
            .require_tls(self.require_tls)
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            .connect(self.url.as_str())
            .await
            .map_err(|error| format!("cannot connect to the NATS server at {}: {error}", self.url))
    }
}
