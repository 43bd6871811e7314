//! `cargo bench -p hypergraph --bench processes`: Hypergraph as it is deployed on PostgreSQL,
//! with 1 and then 2 `hypergraph serve` *processes* (concurrency 16 each, or
//! `HYPERGRAPH_BENCH_CONCURRENCY`) on one database of the
//! server named by `HYPERGRAPH_TEST_POSTGRES`, a fresh schema per case, driven through the binary.
//!
//! (a) throughput: N trivial runs (`counter/count`, a WAT component returning a global) submitted
//!     while the workers wait, first with one `run --inputs` (one transaction: nothing runs
//!     before all N are committed), then by 10 concurrent `run --inputs` of N/10 each (work
//!     starts with the first commit, as with many clients); runs/s from the start of the
//!     submission to the last completion the database recorded, and committed transactions per
//!     run (`pg_stat_database.xact_commit` of the database over the same span; it includes this
//!     harness's own polls, about 4 a second, and whatever else uses the server).
//! (b) chain: a `flow/chain` workflow of 10 sequential child calls, one run at a time; latency
//!     from the run's creation to its completion as the database recorded them; p50 and p95.
//! (c) fan-out: a `flow/fan-out` workflow starting 1,000 children and joining them; creation to
//!     completion.
//!
//! `HYPERGRAPH_BENCH_QUICK=1` for a fast smoke run; `HYPERGRAPH_BENCH_PARTS=b` (or `ac`, ...)
//! runs only those parts; `HYPERGRAPH_DURABILITY` is passed on.

use std::time::{Duration, Instant};

use hypergraph_testing as common;

use common::cli::{fixture_path, Cli, Serve};
use serde_json::{json, Value};

fn quick() -> bool {
    std::env::var_os("HYPERGRAPH_BENCH_QUICK").is_some()
}

/// One value of the test database's server, by SQL.
fn scalar(sql: &str) -> i64 {
    let rows = common::psql(sql);
    rows[0]
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: {e}: {rows:?}"))
}

/// Committed transactions of the test database so far (published by backends at most every
/// second and when idle, hence the pause).
fn commits() -> i64 {
    std::thread::sleep(Duration::from_millis(1_200));
    scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
}

/// The schema `cli` works in.
fn schema(cli: &Cli) -> String {
    cli.location.rsplit_once("schema=").unwrap().1.to_string()
}

/// Execution slots of each `serve` process: `HYPERGRAPH_BENCH_CONCURRENCY`, else 16.
fn concurrency() -> String {
    std::env::var("HYPERGRAPH_BENCH_CONCURRENCY").unwrap_or_else(|_| "16".into())
}

/// `workers` `serve` processes on `cli`'s database, each with [`concurrency`] slots, once every
/// one is up.
fn serves(cli: &Cli, workers: usize) -> Vec<Serve> {
    let concurrency = concurrency();
    let serves: Vec<Serve> = (0..workers)
        .map(|_| cli.spawn_serve(&["serve", "--concurrency", &concurrency]))
        .collect();
    while cli
        .json(&["workers", "list", "--json"])
        .as_array()
        .unwrap()
        .len()
        < workers
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    serves
}

/// Creation-to-completion time of a finished run, as the database recorded it.
fn recorded_latency(cli: &Cli, id: &str) -> Duration {
    let run = cli.wait_finished(id);
    assert_eq!(run["status"], "succeeded", "{run}");
    let micros = run["completed_at"].as_i64().unwrap() - run["created_at"].as_i64().unwrap();
    Duration::from_micros(micros as u64)
}

/// (a): about `runs` trivial runs submitted by `clients` concurrent `run --inputs` processes
/// (each one transaction of `runs / clients` runs), timed from before the first submission
/// starts to the last completion the database recorded.
fn throughput(workers: usize, runs: usize, clients: usize) {
    let cli = Cli::on_postgres();
    cli.ok(&["deploy", &fixture_path("counter.wat"), "--name", "counter"]);
    let per_client = runs / clients;
    let runs = per_client * clients;
    let inputs = cli.dir.path().join("inputs.jsonl");
    std::fs::write(&inputs, "null\n".repeat(per_client)).unwrap();
    let _serves = serves(&cli, workers);
    let schema = schema(&cli);
    let done_sql = format!("SELECT count(*) FROM \"{schema}\".runs WHERE status = 'succeeded'");
    let last_sql = format!("SELECT max(completed_at) FROM \"{schema}\".runs");

    let before = commits();
    let started = Instant::now();
    let started_at = hypergraph_store::now_micros();
    let submitters: Vec<_> = (0..clients)
        .map(|_| {
            cli.cmd(&["run", "counter/count", "--inputs", inputs.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for submitter in submitters {
        let out = submitter.wait_with_output().unwrap();
        assert!(out.status.success(), "run --inputs failed: {out:?}");
    }
    let submitted = started.elapsed();
    let mut polls = 0;
    while scalar(&done_sql) < runs as i64 {
        polls += 1;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "runs unfinished"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let elapsed = Duration::from_micros((scalar(&last_sql) - started_at) as u64);
    let xacts = commits() - before;
    println!(
        "(a) {workers} process(es), {clients} client(s): {runs} runs in {:.2} s (submission {:.2} \
         s) = {:.0} runs/s; {:.2} committed transactions per run ({xacts} in all, {polls} of them \
         polls)",
        elapsed.as_secs_f64(),
        submitted.as_secs_f64(),
        runs as f64 / elapsed.as_secs_f64(),
        xacts as f64 / runs as f64,
    );
}

fn with_flow() -> Cli {
    let cli = Cli::on_postgres();
    cli.deploy_guest("flow", "flow", &[]);
    cli
}

fn chain(workers: usize, rounds: usize) {
    let cli = with_flow();
    let _serves = serves(&cli, workers);
    // One round first, to warm every process's compiled-component cache.
    let warm = cli.submit("flow/chain", json!({"prefix": "warm", "n": 10}));
    recorded_latency(&cli, &warm);
    let mut latencies: Vec<Duration> = (0..rounds)
        .map(|i| {
            let id = cli.submit("flow/chain", json!({"prefix": format!("c{i}"), "n": 10}));
            recorded_latency(&cli, &id)
        })
        .collect();
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "(b) {workers} process(es): 10-step chain over {rounds} runs: p50 {:.1} ms, p95 {:.1} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
    );
}

fn fan_out(workers: usize, children: u32) {
    let cli = with_flow();
    let _serves = serves(&cli, workers);
    let warm = cli.submit("flow/chain", json!({"prefix": "warm", "n": 2}));
    recorded_latency(&cli, &warm);
    let id = cli.submit(
        "flow/fan-out",
        json!({"prefix": "f", "n": children, "sleep-ms": 0, "fail-index": null}),
    );
    let took = recorded_latency(&cli, &id);
    let run: Value = cli.show(&id);
    assert_eq!(run["output"].as_array().unwrap().len(), children as usize);
    println!(
        "(c) {workers} process(es): fan-out of {children}: {:.2} s",
        took.as_secs_f64()
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench targets without `--bench`: nothing to check here.
        return;
    }
    let (runs, rounds, children) = if quick() {
        (2_000, 10, 200)
    } else {
        (10_000, 50, 1_000)
    };
    println!(
        "PostgreSQL, {} durability; machine load: {}",
        std::env::var("HYPERGRAPH_DURABILITY").unwrap_or_else(|_| "strict".into()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let parts = std::env::var("HYPERGRAPH_BENCH_PARTS").unwrap_or_else(|_| "abc".into());
    for workers in [1, 2] {
        if parts.contains('a') {
            throughput(workers, runs, 1);
            throughput(workers, runs, 10);
        }
        if parts.contains('b') {
            chain(workers, rounds);
        }
        if parts.contains('c') {
            fan_out(workers, children);
        }
    }
}
