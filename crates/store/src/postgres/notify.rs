//! Wake-ups across processes on PostgreSQL: `NOTIFY` after commit, `LISTEN` on a connection of
//! its own (see [`crate::wake`]).
//!
//! # Announcing
//!
//! A write that made steps claimable or ended runs asks the store's [`Announcer`] to announce it
//! once it has committed. The announcer sends `pg_notify` from a connection of its own, outside
//! every write transaction: a `NOTIFY` inside a transaction takes a database-wide lock at commit,
//! which serializes the committers that notify (measured: BENCHMARKS.md). At most one
//! announcement is in flight per store; requests that arrive meanwhile are merged into the next
//! one. An announcement that fails is dropped: listeners poll for what was never announced.
//!
//! # Listening
//!
//! The first subscription ([`Listener::subscribe`]) starts a task that `LISTEN`s through a sqlx
//! [`PgListener`] on a connection of its own. When that connection is lost (the server restarted,
//! the backend was terminated) the task reports that it no longer listens, waits (from
//! [`RECONNECT_MIN`], doubling up to [`RECONNECT_MAX`]) and connects again; it does not rely on
//! the listener's own reconnection, which would hide the gap during which announcements were
//! lost. Announcements a store sent itself are ignored: its process wakes its own waiters.
//!
//! # Channel and payloads
//!
//! One channel per Hypergraph database: `hypergraph_<schema>`, or `hypergraph_<hash>` when that
//! is longer than PostgreSQL's 63-byte identifiers. Each payload starts with the sending store's
//! token, then `w` (work may be claimable) or `r` and comma-separated run ids (these runs may have
//! ended), split over several notifications when they exceed [`MAX_PAYLOAD`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::wake::{Wake, WakeSender, Wakeups};

/// The first wait before connecting the listener again after losing it.
pub const RECONNECT_MIN: Duration = Duration::from_millis(100);

/// The longest wait between two attempts to connect the listener.
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// How long connecting the announcer's or the listener's connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of one payload (PostgreSQL refuses 8000 and more).
pub const MAX_PAYLOAD: usize = 7000;

/// The channel of the Hypergraph database in `schema`.
pub fn channel(schema: &str) -> String {
    let name = format!("hypergraph_{schema}");
    if name.len() <= 63 {
        return name;
    }
    // FNV-1a: stable across processes, platforms and versions of this binary.
    let hash = schema.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("hypergraph_{hash:016x}")
}

/// A pool of one connection of its own (no idle or lifetime limit), connected on first use.
fn own_connection(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(CONNECT_TIMEOUT)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options.clone())
}

/// Aborts its task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What is waiting to be announced.
#[derive(Default)]
struct Pending {
    work: bool,
    runs: BTreeSet<String>,
}

impl Pending {
    /// The payloads announcing this, from the store with `token`.
    fn payloads(&self, token: &str) -> Vec<String> {
        let mut payloads = Vec::new();
        if self.work {
            payloads.push(format!("{token} w"));
        }
        let mut runs = String::new();
        for id in &self.runs {
            if !runs.is_empty() && token.len() + 3 + runs.len() + 1 + id.len() > MAX_PAYLOAD {
                payloads.push(format!("{token} r {runs}"));
                runs.clear();
            }
            if !runs.is_empty() {
                runs.push(',');
            }
            runs.push_str(id);
        }
        if !runs.is_empty() {
            payloads.push(format!("{token} r {runs}"));
        }
        payloads
    }
}

/// The wake-up a payload announces, `None` when the store with `own` sent it. A payload this
/// version does not understand (from a newer one) announces [`Wake::Lost`].
fn decode(payload: &str, own: &str) -> Option<Wake> {
    let (token, rest) = payload.split_once(' ').unwrap_or((payload, ""));
    if token == own {
        return None;
    }
    Some(match rest.split_once(' ').unwrap_or((rest, "")) {
        ("w", "") => Wake::Work,
        ("r", ids) if !ids.is_empty() => Wake::Runs(ids.split(',').map(str::to_string).collect()),
        _ => Wake::Lost,
    })
}

/// Announces a store's commits after they committed (see the module docs).
pub struct Announcer {
    shared: Arc<Announcing>,
    _task: AbortOnDrop,
}

struct Announcing {
    pool: PgPool,
    channel: String,
    token: String,
    pending: Mutex<Pending>,
    /// Holds one permit while something is pending and no announcement has picked it up.
    kick: Notify,
    /// Set while [`Announcer::prepare`] connects.
    connecting: AtomicBool,
}

impl Announcer {
    /// An announcer on `channel` for the store with `token`, connecting with `options` when it
    /// first announces. Call from within a Tokio runtime.
    pub fn new(options: &PgConnectOptions, channel: &str, token: &str) -> Announcer {
        let shared = Arc::new(Announcing {
            pool: own_connection(options),
            channel: channel.to_string(),
            token: token.to_string(),
            pending: Mutex::default(),
            kick: Notify::new(),
            connecting: AtomicBool::new(false),
        });
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                loop {
                    shared.kick.notified().await;
                    shared.send_pending().await;
                }
            }
        });
        Announcer {
            shared,
            _task: AbortOnDrop(task),
        }
    }

    /// Connects the announcing connection in the background unless it is connected (or
    /// connecting) already: a writer calls this before a transaction whose commit it will
    /// announce, so the announcement need not wait for a new connection (~8 ms here) after the
    /// commit. A one-shot `hypergraph run` announces its submission that much sooner.
    pub fn prepare(&self) {
        if self.shared.pool.size() > 0
            || self.shared.pool.is_closed()
            || self.shared.connecting.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            // A failure shows when the announcement itself is sent.
            drop(shared.pool.acquire().await);
            shared.connecting.store(false, Ordering::SeqCst);
        });
    }

    /// Announces that steps may have become claimable.
    pub fn work(&self) {
        self.request(|p| p.work = true);
    }

    /// Announces that the runs `ids` may have ended.
    pub fn runs<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        self.request(|p| p.runs.extend(ids.into_iter().map(str::to_string)));
    }

    fn request(&self, add: impl FnOnce(&mut Pending)) {
        add(&mut self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner()));
        self.shared.kick.notify_one();
    }

    /// Sends what is pending now, waits for the announcement in flight, and closes the
    /// connection: nothing is announced afterwards. Takes up to [`CONNECT_TIMEOUT`] more when
    /// the server cannot be reached.
    pub async fn flush(&self) {
        self.shared.send_pending().await;
        self.shared.pool.close().await;
    }
}

impl Announcing {
    async fn send_pending(&self) {
        let payloads = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *pending).payloads(&self.token)
        };
        if payloads.is_empty() {
            return;
        }
        let sent = sqlx::query("SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p")
            .bind(&self.channel)
            .bind(&payloads)
            .execute(&self.pool)
            .await;
        if let Err(e) = sent {
            tracing::debug!(
                channel = %self.channel,
                "cannot announce a commit (other processes find it by polling): {e}"
            );
        }
    }
}

/// Receives other processes' announcements for a store's subscribers (see the module docs).
pub struct Listener {
    options: PgConnectOptions,
    channel: String,
    token: String,
    sender: Arc<WakeSender>,
    task: OnceLock<AbortOnDrop>,
}

impl Listener {
    /// A listener on `channel` for the store with `token`, connecting with `options` on the first
    /// subscription.
    pub fn new(options: &PgConnectOptions, channel: &str, token: &str) -> Listener {
        Listener {
            options: options.clone(),
            channel: channel.to_string(),
            token: token.to_string(),
            sender: Arc::default(),
            task: OnceLock::new(),
        }
    }

    /// A new subscription, starting the listening task if it is not running. Call from within
    /// a Tokio runtime.
    pub fn subscribe(&self) -> Wakeups {
        // Subscribed first: the first subscriber also hears that listening started.
        let wakeups = self.sender.subscribe();
        self.task.get_or_init(|| {
            AbortOnDrop(tokio::spawn(listen_loop(
                self.options.clone(),
                self.channel.clone(),
                self.token.clone(),
                self.sender.clone(),
            )))
        });
        wakeups
    }

    /// Stops listening for good: subscribers see [`Wakeups::listening`] false from now on.
    pub fn stop(&self) {
        if let Some(task) = self.task.get() {
            task.0.abort();
        }
        self.sender.set_listening(false);
    }
}

/// Listens on `channel` and passes what other stores announce to `sender`, connecting again
/// whenever the connection is lost.
async fn listen_loop(
    options: PgConnectOptions,
    channel: String,
    token: String,
    sender: Arc<WakeSender>,
) {
    let mut backoff = RECONNECT_MIN;
    loop {
        match listen(&options, &channel).await {
            Ok(mut listener) => {
                sender.set_listening(true);
                backoff = RECONNECT_MIN;
                let lost = loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => {
                            if let Some(wake) = decode(notification.payload(), &token) {
                                sender.send(wake);
                            }
                        }
                        Ok(None) => break "the connection was closed".to_string(),
                        Err(e) => break e.to_string(),
                    }
                };
                tracing::info!(%channel, "stopped listening for other processes' commits: {lost}");
            }
            Err(e) => {
                tracing::debug!(%channel, "cannot listen for other processes' commits: {e}");
            }
        }
        sender.set_listening(false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// A listener on `channel` over a new connection, which it does not reconnect by itself.
async fn listen(options: &PgConnectOptions, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(&own_connection(options)).await?;
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_fit_in_an_identifier() {
        assert_eq!(channel("hg_e2e_1"), "hypergraph_hg_e2e_1");
        let long = "s".repeat(63);
        let hashed = channel(&long);
        assert!(hashed.len() <= 63, "{hashed}");
        assert_eq!(hashed, channel(&long), "stable");
        assert_ne!(hashed, channel(&"t".repeat(63)));
    }

    #[test]
    fn payloads_round_trip_and_own_ones_are_ignored() {
        let mut pending = Pending {
            work: true,
            ..Pending::default()
        };
        let ids: Vec<String> = (0..500).map(|i| format!("{i:036}")).collect();
        pending.runs.extend(ids.iter().cloned());
        let payloads = pending.payloads("me");
        assert!(payloads.len() > 2, "split: {}", payloads.len());
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        assert_eq!(decode(&payloads[0], "other"), Some(Wake::Work));
        let mut decoded = Vec::new();
        for payload in &payloads[1..] {
            match decode(payload, "other") {
                Some(Wake::Runs(runs)) => decoded.extend(runs),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(decoded, ids);
        assert!(payloads.iter().all(|p| decode(p, "me").is_none()));
        assert_eq!(decode("x future-kind", "me"), Some(Wake::Lost));
        assert!(Pending::default().payloads("me").is_empty());
    }

    /// `prepare` connects the announcing connection before anything is announced, and only one.
    #[tokio::test]
    async fn prepare_connects_ahead_of_the_first_announcement() {
        let server = std::env::var("HYPERGRAPH_TEST_POSTGRES")
            .expect("HYPERGRAPH_TEST_POSTGRES names the test server (scripts/test.sh sets it)");
        let options: PgConnectOptions = server.parse().unwrap();
        let announcer = Announcer::new(&options, "hypergraph_prepare_test", "me");
        assert_eq!(announcer.shared.pool.size(), 0, "connects on first use");
        announcer.prepare();
        announcer.prepare();
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        while announcer.shared.connecting.load(Ordering::SeqCst) {
            assert!(tokio::time::Instant::now() < deadline, "still connecting");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(announcer.shared.pool.size(), 1);
        // The pool takes the connection back on a task of its own (after checking it).
        while announcer.shared.pool.num_idle() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the connection did not go back"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        announcer.prepare();
        assert!(
            !announcer.shared.connecting.load(Ordering::SeqCst),
            "connected already"
        );
        announcer.work();
        announcer.flush().await;
        assert!(announcer.shared.pool.is_closed());
    }
}
