//! The errors the store records on its own (not reported by a worker), as stored JSON values
//! `{"kind": ..., "message": ...}`. Every backend records the same ones.

use serde_json::{json, Value};

/// A step failed because it lost `lost` leases, its policy's `max_lost_leases`.
pub fn outlived_workers(lost: u32) -> Value {
    json!({
        "kind": "lease_expired",
        "message": format!(
            "the step outlived {lost} worker(s): each time, its attempt's lease expired \
             before it completed (the worker died or stalled); after {lost} lost \
             lease(s) it is not claimed again (deployment policy max_lost_leases; a step \
             that always kills its worker would otherwise take every worker down in turn)"
        ),
    })
}

/// An attempt whose lease expired; its step was claimed again.
pub fn lease_lost() -> Value {
    json!({
        "kind": "lease_expired",
        "message": "the attempt's lease ended before it completed: it expired (its worker died \
                    or stalled), or its worker stopped heartbeating long enough to count as dead; \
                    the step was claimed again",
    })
}

/// A run cancelled by [`crate::Store::cancel_run`] (and its unfinished steps).
pub fn run_cancelled() -> Value {
    json!({
        "kind": "cancelled",
        "message": "the run was cancelled",
    })
}

/// A step cancelled because the workflow that started it ended without joining it.
pub fn abandoned() -> Value {
    json!({
        "kind": "cancelled",
        "message": "its workflow ended before it finished (a workflow takes the children it did not join with it)",
    })
}

/// A queued step no worker started before its schedule-to-start deadline.
pub fn schedule_to_start_timeout() -> Value {
    json!({
        "kind": "schedule_to_start_timeout",
        "message": "no worker started the step before its schedule-to-start deadline",
    })
}

/// A run that did not finish before its deadline (and its unfinished steps).
pub fn run_timeout() -> Value {
    json!({
        "kind": "run_timeout",
        "message": "the run did not finish before its deadline (the deployment's run timeout)",
    })
}
