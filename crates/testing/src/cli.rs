//! Driving the real `hypergraph` binary as a user does: one database in a temp dir per test,
//! commands with their exit codes, stdout and stderr, polling `runs show`, and `serve` processes
//! that are killed when the test ends, passed or not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any wait in these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// Between two polls of `runs show`.
pub const POLL: Duration = Duration::from_millis(50);

/// The path of `tests/fixtures/<name>`, as an argument.
pub fn fixture_path(name: &str) -> String {
    super::repo()
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .to_string()
}

/// The `hypergraph` binary under test: `$HYPERGRAPH_TEST_BIN` when set (e.g. an older build, to
/// check that a regression test fails without its fix), else the one cargo built beside this
/// test or benchmark executable (`target/<profile>/hypergraph`; tests of the `hypergraph` package
/// get it built first).
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("HYPERGRAPH_TEST_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test> -> target/<profile>/hypergraph
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    profile_dir.join("hypergraph")
}

/// One database and the commands that use it: a file in a temp dir, or (with
/// `HYPERGRAPH_TEST_STORE=postgres`, see [`crate::backend`]) a fresh PostgreSQL schema.
pub struct Cli {
    pub dir: tempfile::TempDir,
    /// The SQLite file (`hg.db` in `dir`); nothing is there on PostgreSQL.
    pub db: PathBuf,
    /// What `--db` says: `db`, or the PostgreSQL URL.
    pub location: String,
}

impl Default for Cli {
    fn default() -> Self {
        Cli::new()
    }
}

impl Cli {
    /// A fresh, empty database: a file `hg.db` in a new temp dir, or a fresh schema on the
    /// PostgreSQL test server when the tests run on PostgreSQL.
    pub fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hg.db");
        let location = crate::location_in(dir.path());
        Cli { dir, db, location }
    }

    /// A fresh schema on the PostgreSQL test server, whatever backend the other tests use.
    pub fn on_postgres() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hg.db");
        Cli {
            dir,
            db,
            location: crate::postgres_location(),
        }
    }

    /// Commands on the existing SQLite database at `db` (with a new temp dir for everything
    /// else).
    pub fn new_at(db: &Path) -> Cli {
        Cli {
            dir: tempfile::tempdir().unwrap(),
            db: db.to_path_buf(),
            location: db.display().to_string(),
        }
    }

    /// The binary, without `--db`, with nothing inherited that would change where it looks.
    /// `$HYPERGRAPH_TEST_BIN` replaces the binary under test (e.g. an older build, to check
    /// that a regression test fails without its fix).
    pub fn bare(&self) -> Command {
        let mut cmd = Command::new(binary());
        cmd.env_remove("HYPERGRAPH_DB")
            .env_remove("HYPERGRAPH_CACHE_DIR")
            .env_remove("RUST_LOG")
            .current_dir(self.dir.path());
        cmd
    }

    /// `hypergraph --db <this database> <args>`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare();
        cmd.arg("--db").arg(&self.location).args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("hypergraph runs")
    }

    /// Runs and expects exit code `code`; returns stdout.
    pub fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(code),
            "hypergraph {args:?}\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    /// Runs and expects exit code 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.expect(0, args)
    }

    /// Runs and expects exit code `code`; returns stderr.
    pub fn stderr_of_failure(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "hypergraph {args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// Runs, expects exit code 0 and parses stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let stdout = self.ok(args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}\n{stdout}"))
    }

    /// Deploys a private copy of test guest `guest` (`tests/guests/<guest>`, built by
    /// [`crate::guest`]) as `name`, with `extra` deploy flags; returns the copy's path. A private
    /// copy: another test process rebuilding the guest cannot change it under the deploy.
    pub fn deploy_guest(&self, guest: &str, name: &str, extra: &[&str]) -> PathBuf {
        let path = self.dir.path().join(format!("{guest}.wasm"));
        std::fs::write(&path, crate::guest(guest)).unwrap();
        let mut args = vec!["deploy", path.to_str().unwrap(), "--name", name];
        args.extend_from_slice(extra);
        self.ok(&args);
        path
    }

    /// Every registered worker, as `workers list --json` shows it.
    pub fn workers(&self) -> Vec<Value> {
        match self.json(&["workers", "list", "--json"]) {
            Value::Array(workers) => workers,
            other => panic!("workers list --json: expected an array, found {other}"),
        }
    }

    /// The listed worker whose `field` is `value` (its `id`, its `pid`); panics when none is.
    pub fn worker(&self, field: &str, value: impl Into<Value>) -> Value {
        let value = value.into();
        let workers = self.workers();
        workers
            .iter()
            .find(|w| w[field] == value)
            .unwrap_or_else(|| panic!("no worker with {field} {value} in {workers:#?}"))
            .clone()
    }

    /// Like [`Cli::ok`] for a command that must exit by itself: killed after [`DEADLINE`].
    pub fn ok_within_deadline(&self, args: &[&str]) -> String {
        let child = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hypergraph starts");
        let out = wait_within(child, DEADLINE, args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            out.status.code(),
            Some(0),
            "hypergraph {args:?}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `worker --until-idle --json` with `extra` arguments: the worker's stats.
    pub fn worker_until_idle(&self, extra: &[&str]) -> Value {
        let mut args = vec!["worker", "--until-idle", "--json"];
        args.extend_from_slice(extra);
        let stdout = self.ok_within_deadline(&args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("worker stats: {e}\n{stdout}"))
    }

    /// Submits a run without waiting; returns its id.
    pub fn submit(&self, task: &str, input: Value) -> String {
        let queued = self.json(&["run", task, "--input", &input.to_string(), "--json"]);
        assert_eq!(queued["status"], "queued", "{queued}");
        queued["run_id"].as_str().expect("a run id").to_string()
    }

    /// `runs show <id> --json`, with every step (binaries before `--steps` showed them all).
    pub fn show(&self, id: &str) -> Value {
        if std::env::var_os("HYPERGRAPH_TEST_BIN").is_some() {
            return self.json(&["runs", "show", id, "--json"]);
        }
        self.json(&["runs", "show", id, "--steps", "0", "--json"])
    }

    /// Polls `runs show` until `done` accepts the run; panics after [`DEADLINE`] with `what` and
    /// the run's last state.
    pub fn wait_until(&self, id: &str, what: &str, mut done: impl FnMut(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let run = self.show(id);
            if done(&run) {
                return run;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "gave up after {DEADLINE:?} waiting for {what}; run is {}",
                summary(&run)
            );
            std::thread::sleep(POLL);
        }
    }

    /// Polls until the run has finished, whatever its outcome.
    pub fn wait_finished(&self, id: &str) -> Value {
        self.wait_until(id, "the run to finish", |run| {
            matches!(
                run["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
    }

    /// Starts `hypergraph serve --lease 1s` with `extra` arguments; its stderr goes to a file
    /// that is printed if the test fails.
    pub fn serve(&self, extra: &[&str]) -> Serve {
        let mut args = vec!["serve", "--lease", "1s"];
        args.extend_from_slice(extra);
        self.spawn_serve(&args)
    }

    /// Starts `hypergraph --db <this database> <args>` (a `serve` with exactly these
    /// arguments, e.g. its own `--lease`) as [`Cli::serve`] does.
    pub fn spawn_serve(&self, args: &[&str]) -> Serve {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.dir.path().join(format!("serve-{n}.log"));
        let child = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("serve starts");
        Serve { child, log }
    }
}

/// Waits for `child` to exit, killing it (and failing) after `limit`; returns its output.
pub fn wait_within(mut child: Child, limit: Duration, what: &[&str]) -> Output {
    let started = Instant::now();
    while child.try_wait().expect("status").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hypergraph {what:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Runs `cmd` to its end and returns its output and its peak resident memory in KiB.
///
/// The measurement goes through a small `python3` process that starts the command and reads
/// its `ru_maxrss`: a process started directly by the test would be charged the test process's
/// own peak (the kernel folds the parent's high-water mark into a forked child's at `exec`), and
/// tests hold hundreds of MiB of fixtures.
pub fn run_measuring_rss(cmd: Command) -> (Output, u64) {
    const MEASURE: &str = "import resource, subprocess, sys\n\
        done = subprocess.run(sys.argv[2:])\n\
        open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n\
        sys.exit(done.returncode if done.returncode >= 0 else 128 - done.returncode)\n";
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut measured = Command::new("python3");
    measured
        .arg("-c")
        .arg(MEASURE)
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .stdin(Stdio::null());
    for (key, value) in cmd.get_envs() {
        if value.is_none() {
            measured.env_remove(key);
        }
    }
    if let Some(dir) = cmd.get_current_dir() {
        measured.current_dir(dir);
    }
    let output = measured
        .output()
        .expect("python3 runs the measured command");
    let kib = std::fs::read_to_string(report.path())
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no memory figure from the measured command: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    (output, kib)
}

/// The steps of a run as `runs show --json` prints it.
pub fn steps(run: &Value) -> &Vec<Value> {
    run["steps"].as_array().expect("steps")
}

/// The run's root step (the one without a parent).
pub fn root(run: &Value) -> &Value {
    let roots: Vec<&Value> = steps(run)
        .iter()
        .filter(|s| s["parent_id"].is_null())
        .collect();
    assert_eq!(roots.len(), 1, "exactly one root step: {}", summary(run));
    roots[0]
}

/// The steps started by the root, ordered by `child_index`.
pub fn children(run: &Value) -> Vec<&Value> {
    let mut children: Vec<&Value> = steps(run)
        .iter()
        .filter(|s| !s["parent_id"].is_null())
        .collect();
    children.sort_by_key(|s| s["child_index"].as_u64());
    children
}

/// How many of `steps` have `status`.
pub fn count(steps: &[&Value], status: &str) -> usize {
    steps.iter().filter(|s| s["status"] == status).count()
}

/// The attempts of a step.
pub fn attempts(step: &Value) -> &Vec<Value> {
    step["attempts"].as_array().expect("attempts")
}

/// `status (queued 3, running 4, succeeded 10, ...)`: enough to see why a wait failed.
pub fn summary(run: &Value) -> String {
    let all: Vec<&Value> = run["steps"]
        .as_array()
        .map(|s| s.iter().collect())
        .unwrap_or_default();
    let statuses: Vec<String> = [
        "queued",
        "running",
        "waiting",
        "succeeded",
        "failed",
        "cancelled",
    ]
    .iter()
    .map(|s| (s, count(&all, s)))
    .filter(|(_, n)| *n > 0)
    .map(|(s, n)| format!("{s} {n}"))
    .collect();
    format!(
        "{} with {} step(s) ({}); root {}; error {}",
        run["status"],
        all.len(),
        statuses.join(", "),
        all.first().map(|s| s["status"].clone()).unwrap_or_default(),
        run["error"]
    )
}

/// A running `hypergraph serve`, SIGKILLed when dropped if still running.
pub struct Serve {
    pub child: Child,
    pub log: PathBuf,
}

impl Serve {
    /// SIGKILL: the process dies at once, in the middle of whatever it was doing.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL serve");
        self.child.wait().expect("reap serve");
    }

    /// The worker this process registered, as `workers list --json` shows it.
    pub fn worker(&self, cli: &Cli) -> Value {
        cli.worker("pid", self.child.id())
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-TERM`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {signal} {pid} failed");
    }

    /// SIGTERM, then waits for it to exit (in-flight steps finish and commit first).
    pub fn terminate(mut self) -> ExitStatus {
        self.signal("-TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("serve status") {
                return status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "serve did not stop within {DEADLINE:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log());
        }
    }
}

/// The files under `dir` whose name ends with `suffix`, recursively.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_ending(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}
