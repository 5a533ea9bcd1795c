//! A real `nats-server` on a free loopback port (JetStream on, its store in a
//! temporary folder, a token required), and worker hosts that are copies of the test
//! binary in worker host mode, each in its own process group. Both stop on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a server or a host may take to say it is ready.
const READY: Duration = Duration::from_secs(30);

/// A running `nats-server`.
pub struct NatsServer {
    child: Child,
    pub url: String,
    pub token: String,
    port: u16,
    store: TempDir,
}

/// A folder removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a temporary folder");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The lines a child wrote on stderr so far.
type Lines = Arc<(Mutex<Vec<String>>, Condvar)>;

/// Waits until `child` writes a line containing `ready` on stderr; then keeps its
/// stderr drained (echoed, and kept) so that it never blocks on a full pipe.
fn wait_ready(child: &mut Child, what: &str, ready: &'static str) -> Lines {
    let stderr = child.stderr.take().expect("piped stderr");
    let lines: Lines = Arc::default();
    let kept = Arc::clone(&lines);
    let what = what.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{what}] {line}");
            let (list, added) = &*kept;
            list.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(line);
            added.notify_all();
        }
    });
    if !wait_line(&lines, ready, READY) {
        let _ = child.kill();
        panic!("{ready:?} did not come within {READY:?}");
    }
    lines
}

/// Waits until a line containing `text` was written, for at most `limit`.
fn wait_line(lines: &Lines, text: &str, limit: Duration) -> bool {
    let (list, added) = &**lines;
    let deadline = std::time::Instant::now() + limit;
    let mut list = list.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        if list.iter().any(|line| line.contains(text)) {
            return true;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return false;
        }
        list = added
            .wait_timeout(list, deadline - now)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
}

/// A port free on 127.0.0.1 now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

impl NatsServer {
    /// Starts a server that requires `token`.
    pub fn start(token: &str) -> Self {
        let binary = which("nats-server").unwrap_or_else(|| {
            panic!(
                "nats-server is not installed; these tests need the real server: \
                 sudo apt-get install nats-server"
            )
        });
        let store = TempDir::new("nats-store");
        let port = free_port();
        let child = spawn_server(&binary, port, token, &store.0);
        NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            token: token.to_owned(),
            port,
            store,
        }
    }

    /// Stops the server and starts it again on the same port with the same store
    /// (what JetStream had stored is still there).
    pub fn restart(&mut self) {
        kill_group(&mut self.child);
        let binary = which("nats-server").expect("nats-server");
        self.child = spawn_server(&binary, self.port, &self.token, &self.store.0);
    }
}

/// Starts `nats-server` on `port` with `token` and its JetStream store in `store`;
/// returns once it is ready. It runs under a shell, in a process group of its own,
/// that stops it when this test process ends, however it ends (its stdin closes):
/// a fixture kept in a `static` is never dropped.
fn spawn_server(
    binary: &std::path::Path,
    port: u16,
    token: &str,
    store: &std::path::Path,
) -> Child {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" "$@" </dev/null & server=$!; cat >/dev/null; kill $server"#)
        .arg(binary)
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--auth",
            token,
            "-js",
            "-sd",
        ])
        .arg(store)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start nats-server");
    let _ = wait_ready(&mut child, "nats-server", "Server is ready");
    child
}

/// Kills `child` and its process group (it leads one), and reaps it.
fn kill_group(child: &mut Child) {
    // SAFETY: `kill` with a negative pid signals the process group `child` leads (it
    // was started with `process_group(0)`); no memory is involved.
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.wait();
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A worker host: this test binary running the ignored test `entry` with the host's
/// settings in its environment, in its own process group.
pub struct Host {
    pub child: Child,
    pub label: String,
    lines: Lines,
}

impl Host {
    pub fn start(entry: &str, label: &str, env: &[(&str, &str)]) -> Self {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().expect("the test binary");
        let mut command = Command::new(exe);
        command
            .args([
                "--exact",
                entry,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CONCURRENCY_TEST_HOST_LABEL", label)
            .env("CONCURRENCY_TEST_HOST_WATCH_STDIN", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start a worker host");
        let lines = wait_ready(&mut child, label, "serves");
        Host {
            child,
            label: label.to_owned(),
            lines,
        }
    }

    /// Whether the host writes a line containing `text` on stderr within `limit`.
    pub fn says(&self, text: &str, limit: Duration) -> bool {
        wait_line(&self.lines, text, limit)
    }

    /// Kills the host and everything in its process group (its local workers).
    pub fn kill(&mut self) {
        kill_group(&mut self.child);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The body of a worker host's entry point: when the environment names a server
/// (`CONCURRENCY_TEST_HOST_URL`, with `_TOKEN` and `_LABEL`), configures a local
/// pool of `workers` and serves it with `heartbeat` and `capacity` (unless
/// `CONCURRENCY_TEST_HOST_WORKERS`, `_CAPACITY` or `_MAX_DELIVERIES` say otherwise); exits with 3 (after saying why)
/// if it cannot. Without the variable (a normal test run), does nothing.
pub fn serve_host(heartbeat: Duration, workers: usize, capacity: usize) {
    use concurrency_runtime::process::remote::{self, NatsConfig};
    use concurrency_runtime::process::{self, PoolConfig};
    let Ok(url) = std::env::var("CONCURRENCY_TEST_HOST_URL") else {
        return;
    };
    if std::env::var_os("CONCURRENCY_TEST_HOST_WATCH_STDIN").is_some() {
        // The test process holds the other end: when it ends, however it ends, so
        // does this host (a fixture in a `static` is never dropped).
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let label = std::env::var("CONCURRENCY_TEST_HOST_LABEL").unwrap_or_default();
    let token = std::env::var("CONCURRENCY_TEST_HOST_TOKEN").unwrap_or_default();
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let workers = number("CONCURRENCY_TEST_HOST_WORKERS", workers);
    let capacity = number("CONCURRENCY_TEST_HOST_CAPACITY", capacity);
    let config = NatsConfig::new(url)
        .heartbeat(heartbeat)
        .label(label)
        .token(token)
        .capacity(capacity)
        .max_deliveries(number("CONCURRENCY_TEST_HOST_MAX_DELIVERIES", 5) as u32);
    process::configure(PoolConfig::default().workers(workers)).expect("the host's own pool");
    if let Err(error) = remote::serve(config) {
        eprintln!("worker host failed: {error}");
        std::process::exit(3);
    }
}
