//! Example workflow: the meeting pipeline of the field notes, with text tracks instead of audio.
//!
//! Leaf tasks (`fetch-track`, `pad-track`, `transcribe`, `merge`, `topics`, `title`, `summary`,
//! `report-failure`) do real text processing ([`text`], unit-tested on the build machine); the
//! workflow `pipeline` ([`pipeline`]) runs them as child steps with the SDK's
//! [`hypergraph_guest::workflow`] helpers; `fetch-input-track`, `transcribe-pair` and
//! `assemble-report` adapt the leaf functions to the parameter names of the DAG variant,
//! `pipeline.dag.toml`.

// The generated export glue of functions with many (flattened) parameters.
#![allow(clippy::too_many_arguments)]

hypergraph_guest::wit_bindgen::generate!({
    world: "hypergraph-examples:transcripts/transcripts",
    path: ["../../wit", "wit"],
    features: ["clocks-timezone"],
    with: {
        "hypergraph:task/log@0.1.0": hypergraph_guest::bindings::log,
        "hypergraph:task/context@0.1.0": hypergraph_guest::bindings::context,
        "hypergraph:task/kv@0.1.0": hypergraph_guest::bindings::kv,
        "hypergraph:workflow/workflow@0.1.0": hypergraph_guest::bindings::workflow,
    },
    generate_all,
    runtime_path: "hypergraph_guest::wit_bindgen::rt",
});

#[cfg(test)]
mod checks;
pub mod pipeline;
pub mod text;

/// Conversions between the generated WIT types and their serde mirrors in [`text`], field by
/// field (lists and options element by element).
trait Mirror<T> {
    fn mirror(self) -> T;
}

macro_rules! mirror_as_is {
    ($($t:ty),*) => {$(
        impl Mirror<$t> for $t {
            fn mirror(self) -> $t {
                self
            }
        }
    )*};
}
mirror_as_is!(String, u32, f64);

impl<A: Mirror<B>, B> Mirror<Vec<B>> for Vec<A> {
    fn mirror(self) -> Vec<B> {
        self.into_iter().map(Mirror::mirror).collect()
    }
}

impl<A: Mirror<B>, B> Mirror<Option<B>> for Option<A> {
    fn mirror(self) -> Option<B> {
        self.map(Mirror::mirror)
    }
}

/// `mirror!(WitType <=> text::Type { field, ... })`: both directions.
macro_rules! mirror {
    ($($wit:ident <=> $dom:ident { $($field:ident),* $(,)? })*) => {$(
        impl Mirror<text::$dom> for $wit {
            fn mirror(self) -> text::$dom {
                text::$dom { $($field: self.$field.mirror()),* }
            }
        }
        impl Mirror<$wit> for text::$dom {
            fn mirror(self) -> $wit {
                $wit { $($field: self.$field.mirror()),* }
            }
        }
    )*};
}

mirror! {
    Track <=> Track { speaker, text }
    Sentence <=> Sentence { start, text }
    PaddedTrack <=> PaddedTrack { speaker, sentences, duration }
    Segment <=> Segment { speaker, start, text, words }
    TrackTranscript <=> TrackTranscript { speaker, segments }
    Transcript <=> Transcript { segments, speakers, word_count, duration }
    Topic <=> Topic { word, count }
    Job <=> Job { title_hint, tracks, stage_delay_ms }
    TrackFailure <=> TrackFailure { speaker, step, error }
    Report <=> Report { title, summary, topics, speakers, segments, words, failed }
}

impl Mirror<FetchError> for text::FetchError {
    fn mirror(self) -> FetchError {
        match self {
            text::FetchError::Retryable(m) => FetchError::Retryable(m),
            text::FetchError::Rejected(m) => FetchError::Rejected(m),
        }
    }
}

/// `fetch-track`: [`text::fetch`] with the attempt number (failure injection), logged.
fn fetch(track: text::Track) -> Result<Track, FetchError> {
    let attempt = hypergraph_guest::context::attempt();
    match text::fetch(&track, attempt) {
        Ok(fetched) => {
            hypergraph_guest::info!(
                "fetched the track of {} ({} bytes, attempt {attempt})",
                fetched.speaker,
                fetched.text.len()
            );
            Ok(fetched.mirror())
        }
        Err(error) => {
            hypergraph_guest::warn!("fetch failed on attempt {attempt}: {error}");
            Err(error.mirror())
        }
    }
}

struct Transcripts;

impl Guest for Transcripts {
    fn fetch_track(track: Track) -> Result<Track, FetchError> {
        fetch(track.mirror())
    }

    fn pad_track(track: Track) -> PaddedTrack {
        let padded = text::pad(&track.mirror());
        hypergraph_guest::info!(
            "{}: {} sentences over {}",
            padded.speaker,
            padded.sentences.len(),
            text::clock(padded.duration)
        );
        padded.mirror()
    }

    fn transcribe(track: PaddedTrack) -> TrackTranscript {
        let transcript = text::transcribe(&track.mirror());
        let words: usize = transcript.segments.iter().map(|s| s.words.len()).sum();
        hypergraph_guest::info!(
            "{}: {} segments, {words} words",
            transcript.speaker,
            transcript.segments.len()
        );
        transcript.mirror()
    }

    fn merge(tracks: Vec<TrackTranscript>) -> Transcript {
        let transcript = text::merge(&tracks.mirror());
        hypergraph_guest::info!(
            "merged {} speakers: {} segments, {} words, {}",
            transcript.speakers.len(),
            transcript.segments.len(),
            transcript.word_count,
            text::clock(transcript.duration)
        );
        transcript.mirror()
    }

    fn topics(transcript: Transcript, limit: u32) -> Vec<Topic> {
        let topics = text::topics(&transcript.mirror(), limit);
        let list: Vec<String> = topics
            .iter()
            .map(|t| format!("{} ({})", t.word, t.count))
            .collect();
        hypergraph_guest::info!("topics: {}", list.join(", "));
        topics.mirror()
    }

    fn title(topics: Vec<Topic>, hint: Option<String>) -> String {
        text::title(&topics.mirror(), hint.as_deref())
    }

    fn summary(transcript: Transcript, topics: Vec<Topic>, limit: u32) -> String {
        text::summary(&transcript.mirror(), &topics.mirror(), limit)
    }

    fn report_failure(failures: Vec<(String, String)>) -> String {
        let report = text::failure_report(&failures);
        hypergraph_guest::log::error(&report);
        report
    }

    fn fetch_input_track(input: Vec<Track>, index: u32) -> Result<Track, FetchError> {
        let count = input.len();
        match input.into_iter().nth(index as usize) {
            Some(track) => fetch(track.mirror()),
            None => {
                let error = text::FetchError::Rejected(format!(
                    "the input has no track #{index}: it has {count} track(s), numbered from 0"
                ));
                hypergraph_guest::warn!("{error}");
                Err(error.mirror())
            }
        }
    }

    fn transcribe_pair(track_a: Track, track_b: Track) -> Transcript {
        let transcript = text::transcribe_all(&[track_a.mirror(), track_b.mirror()]);
        hypergraph_guest::info!(
            "transcribed {}: {} segments, {} words",
            transcript.speakers.join(" and "),
            transcript.segments.len(),
            transcript.word_count
        );
        transcript.mirror()
    }

    fn assemble_report(
        title: String,
        summary: String,
        topics: Vec<Topic>,
        transcript: Transcript,
    ) -> Report {
        text::report(
            title,
            summary,
            &topics.mirror(),
            &transcript.mirror(),
            Vec::new(),
        )
        .mirror()
    }

    fn pipeline(job: Job) -> Result<Report, String> {
        pipeline::run(job.mirror()).map(Mirror::mirror)
    }
}

export!(Transcripts);
