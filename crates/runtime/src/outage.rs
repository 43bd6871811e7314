//! Riding out a database that is briefly unreachable (a PostgreSQL restart, a dropped
//! connection, a SQLite lock held too long): the worker waits and goes on instead of dying.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::store::is_transient;

/// The first pause after a transient failure; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two tries.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Runs `op` until it succeeds or fails with an error that is not transient
/// ([`crate::store::is_transient`]), pausing between tries with exponential backoff. An outage is
/// logged once when it starts (warn, with the error and `what` failed) and once when it ends
/// (info, with its length), so a worker that waits for its database says so, and only once.
///
/// `op` must be safe to run again after a failure whose effect is unknown: every store write is
/// one transaction (so it either committed or did not), and completions are fenced by attempt
/// (a completion that did commit before its acknowledgement was lost is refused, not recorded
/// twice).
pub async fn retry_transient<T, F, Fut>(what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut since: Option<Instant> = None;
    let mut pause = FIRST_PAUSE;
    loop {
        match op().await {
            Ok(value) => {
                if let Some(since) = since {
                    tracing::info!(
                        "{what}: the database answers again after {:.1} s",
                        since.elapsed().as_secs_f64()
                    );
                }
                return Ok(value);
            }
            Err(e) if is_transient(&e) => {
                if since.is_none() {
                    tracing::warn!(
                        "{what} failed; retrying until the database answers (backing off up to \
                         {} s): {e:#}",
                        MAX_PAUSE.as_secs()
                    );
                    since = Some(Instant::now());
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The log of an operation a loop repeats on its own schedule (heartbeats, lease renewals):
/// a warning when it starts failing and a note when it works again, nothing for the failures in
/// between, so an outage is reported once however long it lasts.
pub struct Repeated {
    what: &'static str,
    failing_since: Option<Instant>,
}

impl Repeated {
    /// The log of `what` (e.g. "renewing leases").
    pub fn new(what: &'static str) -> Repeated {
        Repeated {
            what,
            failing_since: None,
        }
    }

    /// Records the result of one more try.
    pub fn record<T>(&mut self, result: &Result<T>) {
        let what = self.what;
        match (result, self.failing_since) {
            (Ok(_), Some(since)) => {
                self.failing_since = None;
                tracing::info!(
                    "{what} works again after {:.1} s",
                    since.elapsed().as_secs_f64()
                );
            }
            (Err(e), None) => {
                self.failing_since = Some(Instant::now());
                tracing::warn!("{what} failed; trying again at every turn until it works: {e:#}");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn lost() -> anyhow::Error {
        anyhow::Error::new(crate::store::sqlx::Error::PoolTimedOut)
    }

    #[tokio::test]
    async fn transient_failures_are_waited_out_and_others_reported() {
        let tries = AtomicU32::new(0);
        let value = retry_transient("claiming", || async {
            if tries.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(lost())
            } else {
                Ok(7)
            }
        })
        .await
        .unwrap();
        assert_eq!((value, tries.load(Ordering::SeqCst)), (7, 4));

        let tries = AtomicU32::new(0);
        let err = retry_transient("claiming", || async {
            tries.fetch_add(1, Ordering::SeqCst);
            anyhow::Result::<()>::Err(anyhow::anyhow!("deployment `x` version 1 does not exist"))
        })
        .await
        .unwrap_err();
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        assert!(err.to_string().contains("does not exist"));
    }

    #[test]
    fn a_repeated_operation_reports_an_outage_once_and_its_end_once() {
        let mut log = Repeated::new("renewing leases");
        log.record(&Ok::<(), anyhow::Error>(()));
        assert!(log.failing_since.is_none());
        for _ in 0..3 {
            log.record(&Err::<(), _>(lost()));
            assert!(log.failing_since.is_some());
        }
        log.record(&Ok::<(), anyhow::Error>(()));
        assert!(log.failing_since.is_none());
    }
}
