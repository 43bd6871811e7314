//! Compile-time check: a decision over a backend whose primitives' futures are `Send` is itself
//! `Send`, so an async backend (sqlx) can await it on a multi-threaded runtime.

use std::collections::HashMap;

use super::*;

/// A backend whose primitives' futures are `Send` (they are never run).
struct SendTx;

impl Tx for SendTx {
    async fn expired_leases(&mut self, _: Micros, _: usize) -> Result<Vec<ExpiredLease>> {
        unimplemented!()
    }
    async fn step_policy(
        &mut self,
        _: &str,
        _: i64,
        _: Option<&str>,
    ) -> Result<(Policy, DeploymentKind)> {
        unimplemented!()
    }
    async fn count_lost_lease(&mut self, _: &[&str]) -> Result<()> {
        unimplemented!()
    }
    async fn reclaim(
        &mut self,
        _: &[&str],
        _: &str,
        _: Micros,
        _: Micros,
        _: &str,
    ) -> Result<Vec<RawClaim>> {
        unimplemented!()
    }
    async fn claim_queued(
        &mut self,
        _: &str,
        _: Micros,
        _: Micros,
        _: usize,
    ) -> Result<Vec<RawClaim>> {
        unimplemented!()
    }
    async fn record_claims(&mut self, _: &[&str]) -> Result<()> {
        unimplemented!()
    }
    async fn lease_holders(&mut self, _: Micros) -> Result<Vec<LeaseHolder>> {
        unimplemented!()
    }
    async fn end_leases(&mut self, _: &[&str], _: Micros) -> Result<u64> {
        unimplemented!()
    }
    async fn resume_journal(&mut self, _: &str) -> Result<(Vec<JournalRecord>, u32)> {
        unimplemented!()
    }
    async fn end_timed_waits(&mut self, _: Micros) -> Result<()> {
        unimplemented!()
    }
    async fn fail_late_starts(&mut self, _: Micros, _: Micros, _: &str) -> Result<Vec<LateStart>> {
        unimplemented!()
    }
    async fn runs_past_deadline(&mut self, _: Micros) -> Result<Vec<String>> {
        unimplemented!()
    }
    async fn run_status(&mut self, _: &str) -> Result<Option<(Status, String)>> {
        unimplemented!()
    }
    async fn end_run(&mut self, _: &str, _: Status, _: &str, _: Micros) -> Result<()> {
        unimplemented!()
    }
    async fn unfinished_steps(&mut self, _: &str) -> Result<Vec<String>> {
        unimplemented!()
    }
    async fn unfinished_children(&mut self, _: &[&str]) -> Result<Vec<String>> {
        unimplemented!()
    }
    async fn cancel_steps(&mut self, _: &[String], _: Micros, _: &str) -> Result<u64> {
        unimplemented!()
    }
    async fn kv_version(&mut self, _: &str, _: &str) -> Result<Option<i64>> {
        unimplemented!()
    }
    async fn kv_prefix(&mut self, _: &str, _: &str) -> Result<(i64, i64)> {
        unimplemented!()
    }
    async fn apply_kv_writes(&mut self, _: &[KvWrite], _: Micros) -> Result<()> {
        unimplemented!()
    }
    async fn requeue_conflicted(&mut self, _: &str, _: u32) -> Result<bool> {
        unimplemented!()
    }
    async fn step_status(&mut self, _: &str) -> Result<Option<Status>> {
        unimplemented!()
    }
    async fn fence_and_complete(&mut self, _: &[StepEnd<'_>]) -> Result<Vec<Changed>> {
        unimplemented!()
    }
    async fn mirror_attempts(&mut self, _: &[&str]) -> Result<()> {
        unimplemented!()
    }
    async fn end_runs_with_root(&mut self, _: &[&str]) -> Result<()> {
        unimplemented!()
    }
    async fn insert_children(&mut self, _: &[&Completion], _: Micros) -> Result<()> {
        unimplemented!()
    }
    async fn insert_journal(&mut self, _: &[JournalRow<'_>]) -> Result<()> {
        unimplemented!()
    }
    async fn insert_logs(&mut self, _: &[LogRow<'_>]) -> Result<()> {
        unimplemented!()
    }
    async fn await_unfinished(&mut self, _: &[String]) -> Result<i64> {
        unimplemented!()
    }
    async fn set_pending(&mut self, _: &str, _: u32, _: i64) -> Result<()> {
        unimplemented!()
    }
    async fn end_wait(&mut self, _: &str, _: u32) -> Result<()> {
        unimplemented!()
    }
    async fn event_sent_after(&mut self, _: &str, _: i64) -> Result<bool> {
        unimplemented!()
    }
    async fn count_down_parents(&mut self, _: &[&str]) -> Result<Vec<(String, i64)>> {
        unimplemented!()
    }
    async fn end_child_waits(&mut self, _: &[String]) -> Result<()> {
        unimplemented!()
    }
    async fn insert_event(&mut self, _: &str, _: &str, _: Micros) -> Result<i64> {
        unimplemented!()
    }
    async fn end_event_waits(&mut self, _: &str) -> Result<u64> {
        unimplemented!()
    }
    async fn resumable_steps(&mut self, _: &str) -> Result<Vec<ResumableStep>> {
        unimplemented!()
    }
    async fn children_of(&mut self, _: &str) -> Result<Vec<String>> {
        unimplemented!()
    }
    async fn unposition_children(&mut self, _: &str, _: u32) -> Result<Vec<String>> {
        unimplemented!()
    }
    async fn new_attempt(&mut self, _: &str, _: u32) -> Result<()> {
        unimplemented!()
    }
    async fn requeue_step(&mut self, _: &str, _: Option<u32>) -> Result<()> {
        unimplemented!()
    }
    async fn sweep_due(&mut self, _: Micros) -> Result<bool> {
        unimplemented!()
    }
    async fn requeue_run(&mut self, _: &str) -> Result<()> {
        unimplemented!()
    }
    async fn pin_step(&mut self, _: &str, _: i64, _: &str) -> Result<()> {
        unimplemented!()
    }
    async fn pin_run(&mut self, _: &str, _: i64, _: &str) -> Result<()> {
        unimplemented!()
    }
}

fn send<T: Send>(_: T) {}

#[test]
fn a_send_backends_decisions_are_send() {
    // Never polled: only the futures' types matter.
    let tx = &mut SendTx;
    let all = claim::Sweep {
        deadlines: true,
        workers: true,
        leases: true,
    };
    send(claim::claim(tx, "w", 1, 0, 0, all));
    send(claim::end_leases_of_gone_workers(tx, 0));
    send(complete::apply(tx, &[], 0));
    send(cancel::cancel_run(tx, "r", 0));
    send(deadlines::expire(tx, 0));
    send(resume::resume_run(tx, "r", &HashMap::new()));
    send(waits::send_event(tx, "e", "1", 0));
}
