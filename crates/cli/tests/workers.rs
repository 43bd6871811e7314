//! Workers you can see, end to end through the real binary: two `serve` processes on one
//! database register and heartbeat, `workers list` shows both with what they hold and
//! completed, a SIGKILLed one turns dead and the step it held is run again by the other long
//! before its lease would have expired, and `runs show` names the worker and hypergraph version
//! of every attempt. Runs on SQLite, and on PostgreSQL with `HYPERGRAPH_TEST_STORE=postgres`.

use hypergraph_testing as common;

use std::time::{Duration, Instant};

use common::cli::{attempts, fixture_path, Cli, Serve};
use serde_json::Value;

/// The hypergraph version every worker of this build registers.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `serve` with one slot, a minute's lease and a 500 ms heartbeat (so a dead worker is found
/// within seconds, while its lease would hold for a minute), logging claims and completions.
fn serve(cli: &Cli) -> Serve {
    cli.spawn_serve(&[
        "serve",
        "-v",
        "--concurrency",
        "1",
        "--lease",
        "60s",
        "--heartbeat",
        "500ms",
    ])
}

/// Runs `n` `hostile/ok` runs and waits until each succeeded; returns their step ids.
fn run_ok(cli: &Cli, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n)
        .map(|_| cli.submit("hostile/ok", Value::Null))
        .collect();
    ids.iter()
        .map(|id| {
            let run = cli.wait_until(id, "an ok run to succeed", |run| {
                run["status"] == "succeeded"
            });
            run["steps"][0]["id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn workers_are_listed_and_a_killed_workers_step_is_taken_over_before_its_lease_ends() {
    let cli = Cli::new();
    cli.ok(&[
        "deploy",
        &fixture_path("hostile.wat"),
        "--name",
        "hostile",
        "--timeout",
        "5m",
    ]);

    // A alone: it completes three runs, then takes a step that never ends by itself and holds
    // its only slot with it.
    let a = serve(&cli);
    let by_a = run_ok(&cli, 3);
    let spin = cli.submit("hostile/spin", Value::Null);
    let run = cli.wait_until(&spin, "A to run the spin", |run| {
        run["steps"][0]["status"] == "running"
    });
    let spin_step = run["steps"][0]["id"].as_str().unwrap().to_string();
    let a_id = run["steps"][0]["worker_id"].as_str().unwrap().to_string();
    // B does the rest.
    let b = serve(&cli);
    let by_b = run_ok(&cli, 3);

    let seen_a = a.worker(&cli);
    let seen_b = b.worker(&cli);
    assert_eq!(seen_a["id"], a_id.as_str(), "{seen_a}");
    for (worker, done) in [(&seen_a, &by_a), (&seen_b, &by_b)] {
        assert_eq!(worker["state"], "live", "{worker}");
        assert_eq!(worker["version"], VERSION, "{worker}");
        assert_eq!(worker["concurrency"], 1, "{worker}");
        assert_eq!(worker["heartbeat_ms"], 500, "{worker}");
        assert!(worker["schema_version"].as_i64().unwrap() > 0, "{worker}");
        assert!(!worker["host"].as_str().unwrap().is_empty(), "{worker}");
        assert!(
            worker["completed_recently"].as_u64().unwrap() >= done.len() as u64,
            "{worker}"
        );
        assert!(worker["last_completed_at"].is_i64(), "{worker}");
        assert!(worker["stopped_at"].is_null(), "{worker}");
    }
    let held = seen_a["holding"].as_array().unwrap();
    assert_eq!(held.len(), 1, "{seen_a}");
    assert_eq!(held[0]["step_id"], spin_step.as_str());
    assert_eq!(held[0]["run_id"], spin.as_str());
    assert_eq!(seen_b["holding"], Value::Array(Vec::new()), "{seen_b}");
    let b_id = seen_b["id"].as_str().unwrap().to_string();
    let text = cli.ok(&["workers", "list"]);
    assert!(
        text.contains(&a_id) && text.contains(&b_id) && text.contains("live"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{a_id} holds:")) && text.contains(&spin_step),
        "{text}"
    );

    // Every worker says where it works, who it is and how much it runs at once, and with -v
    // logs each claim and completion.
    for (serve, id) in [(&a, &a_id), (&b, &b_id)] {
        let log = serve.log();
        assert!(
            log.contains(&format!(
                "serving: worker {id} on {} (concurrency 1, heartbeat every 500ms)",
                cli.location
            )),
            "{log}"
        );
    }
    let log_b = b.log();
    for step in &by_b {
        let lines: Vec<&str> = log_b
            .lines()
            .filter(|l| l.contains(step.as_str()))
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("claimed") && l.contains("attempt=1"))
                && lines
                    .iter()
                    .any(|l| l.contains("completed") && l.contains("succeeded")),
            "step {step} claimed and completed in:\n{log_b}"
        );
    }

    // A dies in the middle of the spin. Its lease holds for a minute, but six missed heartbeats
    // make it dead within seconds, and B takes the step over.
    let killed = Instant::now();
    a.kill();
    let run = cli.wait_until(&spin, "B to take the spin over", |run| {
        run["steps"][0]["attempt"] == 2 && run["steps"][0]["status"] == "running"
    });
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "taken over after {:?}: that is the lease expiring, not the worker found dead",
        killed.elapsed()
    );
    let tries = attempts(&run["steps"][0]);
    assert_eq!(tries[0]["worker_id"], a_id.as_str(), "{run}");
    assert_eq!(tries[0]["status"], "failed", "{run}");
    assert_eq!(tries[0]["error"]["kind"], "lease_expired", "{run}");
    assert_eq!(tries[1]["worker_id"], b_id.as_str(), "{run}");
    for attempt in tries {
        assert_eq!(attempt["hypergraph_version"], VERSION, "{run}");
    }
    let dead = cli.worker("id", a_id.as_str());
    assert_eq!(dead["state"], "dead", "{dead}");
    assert_eq!(dead["holding"], Value::Array(Vec::new()), "{dead}");
    let seen_b = b.worker(&cli);
    assert_eq!(seen_b["state"], "live", "{seen_b}");
    assert_eq!(seen_b["holding"][0]["step_id"], spin_step.as_str());
    assert_eq!(seen_b["holding"][0]["attempt"], 2);

    // `runs show` names the worker and the version of each attempt.
    let text = cli.ok(&["runs", "show", &spin]);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("#1") || l.contains("#2"))
        .collect();
    assert!(text.contains("VERSION"), "{text}");
    assert!(
        rows.iter()
            .any(|l| l.contains("#1") && l.contains(&a_id) && l.contains(VERSION))
            && rows
                .iter()
                .any(|l| l.contains("#2") && l.contains(&b_id) && l.contains(VERSION)),
        "{text}"
    );

    // A clean stop shows as such.
    cli.ok(&["runs", "cancel", &spin]);
    assert!(b.terminate().success(), "serve exits 0 on SIGTERM");
    let stopped = cli.worker("id", b_id.as_str());
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(stopped["stopped_at"].is_i64(), "{stopped}");
}
