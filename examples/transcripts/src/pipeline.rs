//! The `pipeline` workflow: every stage is a set of child steps started through
//! [`hypergraph_guest::workflow`], so each one is recorded, retried and resumed on its own.
//!
//! The workflow itself only decides what to start next from its input and its children's
//! results. It is re-executed from the start whenever it resumes (a child finished, a timer fired,
//! a worker crashed); the children it already started or joined are answered from the journal, so
//! nothing runs twice and the code below must take the same path every time, which it does: it
//! depends on nothing but the job and the children's results.

use std::time::Duration;

use hypergraph_guest::workflow::{self, ChildError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::text::{
    self, Job, PaddedTrack, Report, Topic, Track, TrackFailure, TrackTranscript, Transcript,
};

/// How many topics the report lists.
const TOPICS: u32 = 5;
/// How many sentences the summary has.
const SUMMARY_SENTENCES: u32 = 3;

/// The child task names, `<deployment>/<function>`, for the deployment this workflow runs in
/// (`transcripts` unless deployed under another name: the children are always its own tasks).
struct Tasks {
    deployment: String,
}

impl Tasks {
    fn of_this_run() -> Self {
        let name = hypergraph_guest::context::task_name();
        let deployment = name
            .split_once('/')
            .map(|(deployment, _)| deployment.to_string())
            .unwrap_or_else(|| "transcripts".to_string());
        Tasks { deployment }
    }

    fn task(&self, function: &str) -> String {
        format!("{}/{function}", self.deployment)
    }
}

/// One per-track stage: starts `function` for every surviving track at once (its single parameter
/// is `track`), joins them all, and returns the outputs of the tracks that succeeded, recording
/// the others in `failures`. When no track is left, has `report-failure` write the failure
/// report and returns it as the error: the later stages would have nothing to work on.
fn per_track<I: Serialize, O: DeserializeOwned>(
    tasks: &Tasks,
    function: &str,
    inputs: Vec<(String, I)>,
    failures: &mut Vec<TrackFailure>,
) -> Result<Vec<(String, O)>, String> {
    let task = tasks.task(function);
    let children = workflow::start_all(
        &task,
        inputs.iter().map(|(_, input)| json!({ "track": input })),
    )
    .map_err(|e| e.to_string())?;
    let results = workflow::join::<O>(&children);
    let mut succeeded = Vec::new();
    for ((speaker, _), result) in inputs.into_iter().zip(results) {
        match result {
            Ok(output) => succeeded.push((speaker, output)),
            Err(error) => {
                let error = describe(&error);
                hypergraph_guest::warn!(
                    "leaving out the track of {speaker}: {function} failed: {error}"
                );
                failures.push(TrackFailure {
                    speaker,
                    step: function.to_string(),
                    error,
                });
            }
        }
    }
    hypergraph_guest::info!(
        "{function}: {} of {} tracks done",
        succeeded.len(),
        children.len()
    );
    if succeeded.is_empty() {
        return Err(fail(tasks, track_failures(failures)));
    }
    Ok(succeeded)
}

/// Gives up: has `report-failure` write (and log) the failure report and returns it as the error.
fn fail(tasks: &Tasks, failures: Vec<(String, String)>) -> String {
    let task = tasks.task("report-failure");
    match workflow::call::<_, String>(&task, &json!({ "failures": failures })) {
        Ok(report) => report,
        // The report step failing too must not hide the original failures.
        Err(e) => format!("{}\n(and {e})", text::failure_report(&failures)),
    }
}

/// A short description of a child's failure: for an application error its `err` value (a
/// `fetch-error` reads `rejected: <message>`), else the kind and message.
fn describe(error: &ChildError) -> String {
    match &error.value {
        Some(serde_json::Value::String(message)) if error.is_application() => message.clone(),
        Some(serde_json::Value::Object(case)) if error.is_application() && case.len() == 1 => {
            let (name, payload) = case.iter().next().expect("one entry");
            match payload {
                serde_json::Value::String(message) => format!("{name}: {message}"),
                other => format!("{name}: {other}"),
            }
        }
        _ => format!("{} ({})", error.message, error.kind),
    }
}

fn track_failures(failures: &[TrackFailure]) -> Vec<(String, String)> {
    failures
        .iter()
        .map(|f| (format!("{} ({})", f.step, f.speaker), f.error.clone()))
        .collect()
}

fn pause(job: &Job) {
    if let Some(ms) = job.stage_delay_ms.filter(|&ms| ms > 0) {
        workflow::sleep(Duration::from_millis(u64::from(ms)));
    }
}

/// The speakers of `job`, sorted, or why the job is refused before any step starts: it has no
/// tracks, or two tracks of the same speaker (their failures and report lines would be ambiguous).
fn speakers(job: &Job) -> Result<Vec<&str>, String> {
    if job.tracks.is_empty() {
        return Err("the job has no tracks".to_string());
    }
    let mut speakers: Vec<&str> = job.tracks.iter().map(|t| t.speaker.trim()).collect();
    speakers.sort_unstable();
    if let Some(pair) = speakers.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(format!("two tracks have the speaker {:?}", pair[0]));
    }
    Ok(speakers)
}

/// The workflow `pipeline(job) -> result<report, string>`.
pub fn run(job: Job) -> Result<Report, String> {
    let speakers = speakers(&job)?;
    let tasks = Tasks::of_this_run();
    hypergraph_guest::info!(
        "pipeline of {} tracks: {}",
        job.tracks.len(),
        speakers.join(", ")
    );
    let mut failures: Vec<TrackFailure> = Vec::new();

    // Fan out per track: fetch all, then pad all, then transcribe all. A track that fails a stage
    // (after its retries) is left out of the next ones; the others go on. The run fails, with a
    // failure report, as soon as no track is left.
    let inputs = job
        .tracks
        .iter()
        .map(|t| (t.speaker.clone(), t.clone()))
        .collect();
    let fetched: Vec<(String, Track)> = per_track(&tasks, "fetch-track", inputs, &mut failures)?;
    pause(&job);
    let padded: Vec<(String, PaddedTrack)> =
        per_track(&tasks, "pad-track", fetched, &mut failures)?;
    pause(&job);
    let transcribed: Vec<(String, TrackTranscript)> =
        per_track(&tasks, "transcribe", padded, &mut failures)?;
    pause(&job);

    // Fan in: one transcript, then its topics.
    let transcripts: Vec<TrackTranscript> = transcribed.into_iter().map(|(_, t)| t).collect();
    let transcript: Transcript =
        match workflow::call(&tasks.task("merge"), &json!({ "tracks": transcripts })) {
            Ok(transcript) => transcript,
            Err(e) => return Err(fail(&tasks, step_failure("merge", &e, &failures))),
        };
    let topics: Vec<Topic> = match workflow::call(
        &tasks.task("topics"),
        &json!({ "transcript": transcript, "limit": TOPICS }),
    ) {
        Ok(topics) => topics,
        Err(e) => return Err(fail(&tasks, step_failure("topics", &e, &failures))),
    };

    // Title and summary in parallel.
    let start = |function: &str, input: serde_json::Value| {
        workflow::start(&tasks.task(function), &input).map_err(|e| e.to_string())
    };
    let title_child = start("title", json!({ "topics": topics, "hint": job.title_hint }))?;
    let summary_child = start(
        "summary",
        json!({ "transcript": transcript, "topics": topics, "limit": SUMMARY_SENTENCES }),
    )?;
    let (title, summary) = workflow::join2::<String, String>(&title_child, &summary_child);
    let (title, summary) = match (title, summary) {
        (Ok(title), Ok(summary)) => (title, summary),
        (title, summary) => {
            let mut all = track_failures(&failures);
            for error in [title.err(), summary.err()].into_iter().flatten() {
                let step = error.task.rsplit('/').next().unwrap_or(&error.task);
                all.push((step.to_string(), describe(&error)));
            }
            return Err(fail(&tasks, all));
        }
    };

    for failure in &failures {
        hypergraph_guest::warn!(
            "the report leaves out {} ({} failed)",
            failure.speaker,
            failure.step
        );
    }
    let report = text::report(title, summary, &topics, &transcript, failures);
    hypergraph_guest::info!(
        "report: {:?}, {} segments, {} words, topics {}",
        report.title,
        report.segments,
        report.words,
        report.topics.join(", ")
    );
    Ok(report)
}

/// The failures so far plus the failed step `step`.
fn step_failure(
    step: &str,
    error: &ChildError,
    failures: &[TrackFailure],
) -> Vec<(String, String)> {
    let mut all = track_failures(failures);
    all.push((step.to_string(), describe(error)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(speakers: &[&str]) -> Job {
        Job {
            title_hint: None,
            tracks: speakers
                .iter()
                .map(|speaker| Track {
                    speaker: speaker.to_string(),
                    text: "Hello.".to_string(),
                })
                .collect(),
            stage_delay_ms: None,
        }
    }

    fn application_error(value: serde_json::Value) -> ChildError {
        ChildError {
            task: "transcripts/fetch-track".to_string(),
            kind: ChildError::APPLICATION.to_string(),
            message: "the task returned an error".to_string(),
            value: Some(value),
        }
    }

    #[test]
    fn jobs_without_tracks_or_with_a_repeated_speaker_are_refused() {
        assert_eq!(speakers(&job(&["bob", "alice"])).unwrap(), ["alice", "bob"]);
        assert_eq!(speakers(&job(&[])).unwrap_err(), "the job has no tracks");
        assert_eq!(
            speakers(&job(&["bob", "alice", " bob"])).unwrap_err(),
            r#"two tracks have the speaker "bob""#
        );
    }

    #[test]
    fn failures_are_described_by_their_error_value() {
        // A `fetch-error` variant reads `<case>: <message>`, as in the report's `failed` list.
        let rejected = application_error(serde_json::json!({ "rejected": "corrupt" }));
        assert_eq!(describe(&rejected), "rejected: corrupt");
        // A `result<_, string>` error is its string.
        assert_eq!(describe(&application_error(serde_json::json!("no"))), "no");
        // Anything else: the host's message and the kind.
        let trap = ChildError {
            kind: "trap".to_string(),
            message: "wasm trap: unreachable".to_string(),
            value: None,
            ..rejected
        };
        assert_eq!(describe(&trap), "wasm trap: unreachable (trap)");
    }
}
