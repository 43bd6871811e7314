//! Completing: how a completion leaves its step.

use crate::{Completion, Wait};

/// How a completion leaves its step, as every backend stores it: `(status, wait, wait_event,
/// wake_at)`. A suspension (any [`Wait`]) leaves it `queued` with what it waits for (`children`,
/// `timer` until `wake_at`, `event` named `wait_event` until an optional `wake_at`); a failure
/// queued for a retry leaves it `queued` until `retry_at`; anything else leaves it in the
/// completion's status.
pub fn step_state(
    c: &Completion,
) -> (
    &'static str,
    Option<&'static str>,
    Option<&str>,
    Option<i64>,
) {
    match (&c.wait, c.retry_at) {
        (Some(Wait::Children(_) | Wait::AnyChild(_)), _) => {
            ("queued", Some("children"), None, None)
        }
        (Some(Wait::Timer(until)), _) => ("queued", Some("timer"), None, Some(*until)),
        (Some(Wait::Event { name, deadline, .. }), _) => {
            ("queued", Some("event"), Some(name.as_str()), *deadline)
        }
        (None, Some(at)) => ("queued", None, None, Some(at)),
        (None, None) => (c.status.as_str(), None, None, None),
    }
}
