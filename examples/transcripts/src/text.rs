//! The text processing of the pipeline, free of any host call, so it is unit-tested on the build
//! machine (`cargo test --lib`, see README.md).
//!
//! The types mirror the records of `wit/world.wit` with serde, kebab-case like the WIT JSON
//! mapping, so the workflow can hand them to child tasks as JSON and read their outputs back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Speaking rate of the time line: 0.4 s a word (150 words a minute), in tenths of a second.
const TENTHS_PER_WORD: u64 = 4;
/// Pause after every sentence, in tenths of a second.
const TENTHS_AFTER_SENTENCE: u64 = 4;
/// Sentences shorter than this are not picked for the summary ("Sounds good.").
const MIN_SUMMARY_WORDS: usize = 5;
/// Longest accepted track text, in bytes.
const MAX_TEXT_BYTES: usize = 200_000;
/// Longest accepted speaker name, in characters.
const MAX_SPEAKER_CHARS: usize = 64;

/// One speaker's track (WIT `track`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Track {
    pub speaker: String,
    pub text: String,
}

/// A sentence placed on the time line (WIT `sentence`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Sentence {
    pub start: f64,
    pub text: String,
}

/// A track split into timed sentences (WIT `padded-track`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PaddedTrack {
    pub speaker: String,
    pub sentences: Vec<Sentence>,
    pub duration: f64,
}

/// A transcribed sentence (WIT `segment`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Segment {
    pub speaker: String,
    pub start: f64,
    pub text: String,
    pub words: Vec<String>,
}

/// One speaker's segments (WIT `track-transcript`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrackTranscript {
    pub speaker: String,
    pub segments: Vec<Segment>,
}

/// All segments on one time line (WIT `transcript`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Transcript {
    pub segments: Vec<Segment>,
    pub speakers: Vec<String>,
    pub word_count: u32,
    pub duration: f64,
}

/// A keyword and its count (WIT `topic`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Topic {
    pub word: String,
    pub count: u32,
}

/// Why a track could not be fetched (WIT variant `fetch-error`: `{"retryable": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FetchError {
    Retryable(String),
    Rejected(String),
}

/// `retryable: <message>` or `rejected: <message>`: the case name, as in the WIT JSON mapping.
impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Retryable(message) => write!(f, "retryable: {message}"),
            FetchError::Rejected(message) => write!(f, "rejected: {message}"),
        }
    }
}

/// The input of the pipeline (WIT `job`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Job {
    #[serde(default)]
    pub title_hint: Option<String>,
    pub tracks: Vec<Track>,
    #[serde(default)]
    pub stage_delay_ms: Option<u32>,
}

/// A track the pipeline left out (WIT `track-failure`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrackFailure {
    pub speaker: String,
    pub step: String,
    pub error: String,
}

/// The pipeline's result (WIT `report`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub title: String,
    pub summary: String,
    pub topics: Vec<String>,
    pub speakers: Vec<String>,
    pub segments: u32,
    pub words: u32,
    pub failed: Vec<TrackFailure>,
}

// ---------------------------------------------------------------------------------------------
// fetch-track

/// Validates and normalizes a downloaded track. `attempt` (1, 2, ...) drives the failure
/// injection: `#flaky` fails attempt 1 with [`FetchError::Retryable`], `#broken` fails every
/// attempt with [`FetchError::Rejected`]. The markers are removed from the output.
pub fn fetch(track: &Track, attempt: u32) -> Result<Track, FetchError> {
    let speaker = track.speaker.trim();
    let who = if speaker.is_empty() { "?" } else { speaker };
    let markers = |marker: &str| {
        track
            .text
            .split_whitespace()
            .any(|w| w.eq_ignore_ascii_case(marker))
    };
    if markers("#broken") {
        return Err(FetchError::Rejected(format!(
            "the track of {who} is corrupt (#broken): every download of it fails the same way"
        )));
    }
    if markers("#flaky") && attempt <= 1 {
        return Err(FetchError::Retryable(format!(
            "connection reset while downloading the track of {who} (attempt {attempt}; \
             #flaky fails the first attempt only)"
        )));
    }
    if speaker.is_empty() {
        return Err(FetchError::Rejected("a track has no speaker".to_string()));
    }
    if speaker.chars().count() > MAX_SPEAKER_CHARS || speaker.chars().any(char::is_control) {
        return Err(FetchError::Rejected(format!(
            "invalid speaker name {speaker:?}: at most {MAX_SPEAKER_CHARS} characters, no \
             control characters"
        )));
    }
    if track.text.len() > MAX_TEXT_BYTES {
        return Err(FetchError::Rejected(format!(
            "the track of {speaker} is {} bytes long; at most {MAX_TEXT_BYTES} are accepted",
            track.text.len()
        )));
    }
    let text = normalize_download(&track.text);
    if text.is_empty() {
        return Err(FetchError::Rejected(format!(
            "the track of {speaker} is empty"
        )));
    }
    Ok(Track {
        speaker: speaker.to_string(),
        text,
    })
}

/// Byte-level cleanup of a downloaded text: no byte-order mark, `\n` line endings, tabs as
/// spaces, no other control characters, no trailing spaces, at most one blank line in a row, no
/// failure-injection markers.
fn normalize_download(text: &str) -> String {
    let text = text
        .trim_start_matches('\u{feff}')
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut lines = Vec::new();
    let mut blank_run = 0;
    for line in text.split('\n') {
        let line: String = line
            .split_whitespace()
            .filter(|w| !w.eq_ignore_ascii_case("#flaky") && !w.eq_ignore_ascii_case("#broken"))
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        lines.push(line);
    }
    lines.join("\n").trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// pad-track

/// Splits a track into sentences and places them on the time line: a turn that starts with a cue
/// mark `[m:ss]` (or `[h:mm:ss]`) starts then (or when the speaker's previous sentence ended, if
/// that is later); every sentence takes 0.4 s a word plus a 0.4 s pause.
pub fn pad(track: &Track) -> PaddedTrack {
    let mut clock: u64 = 0; // tenths of a second
    let mut end: u64 = 0;
    let mut sentences = Vec::new();
    for (cue, text) in turns(&track.text) {
        if let Some(cue) = cue {
            clock = clock.max(cue * 10);
        }
        for sentence in split_sentences(&normalize_punctuation(&text)) {
            let words = tokenize(&sentence).len() as u64;
            if words == 0 {
                continue;
            }
            sentences.push(Sentence {
                start: clock as f64 / 10.0,
                text: sentence,
            });
            end = clock + words * TENTHS_PER_WORD;
            clock = end + TENTHS_AFTER_SENTENCE;
        }
    }
    PaddedTrack {
        speaker: track.speaker.clone(),
        sentences,
        duration: end as f64 / 10.0,
    }
}

/// The turns of a text: each cue mark starts a new turn; text before the first mark is a turn
/// without a cue. Returns (cue in seconds, text).
fn turns(text: &str) -> Vec<(Option<u64>, String)> {
    let mut turns: Vec<(Option<u64>, String)> = vec![(None, String::new())];
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let cue = after
            .find(']')
            .and_then(|close| Some((parse_cue(&after[..close])?, close)));
        match cue {
            Some((seconds, close)) => {
                turns.last_mut().unwrap().1.push_str(&rest[..open]);
                turns.push((Some(seconds), String::new()));
                rest = &after[close + 1..];
            }
            None => {
                turns.last_mut().unwrap().1.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    turns.last_mut().unwrap().1.push_str(rest);
    turns.retain(|(_, text)| !text.trim().is_empty());
    turns
}

/// `m:ss` or `h:mm:ss` in seconds.
fn parse_cue(cue: &str) -> Option<u64> {
    let parts: Vec<&str> = cue.trim().split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let numbers: Vec<u64> = parts
        .iter()
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if numbers[1..].iter().any(|&n| n >= 60) {
        return None;
    }
    Some(numbers.iter().fold(0, |total, n| total * 60 + n))
}

/// One line of text with typographic quotes and dashes made plain, single spaces, and no space
/// before punctuation.
pub fn normalize_punctuation(text: &str) -> String {
    let plain: String = text
        .chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{201b}' | '\u{2032}' => '\'',
            '\u{201c}' | '\u{201d}' | '\u{201f}' | '\u{2033}' => '"',
            '\u{2013}' | '\u{2014}' | '\u{2212}' => '-',
            '\u{00a0}' => ' ',
            c => c,
        })
        .collect();
    let plain = plain.replace('\u{2026}', "...");
    let mut out = String::with_capacity(plain.len());
    for word in plain.split_whitespace() {
        let attaches = word.starts_with([',', '.', ';', ':', '!', '?', ')']);
        if !out.is_empty() && !attaches {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Abbreviations whose final dot does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "ms.", "dr.", "prof.", "approx.", "no.", "st.",
];

/// Splits normalized text into sentences. A sentence ends at `.`, `!` or `?` (and any closing
/// quotes or brackets) followed by a space and an upper-case letter, a digit or a quote, or at the
/// end of the text; not after a known abbreviation. Every sentence starts with a capital and ends
/// with punctuation.
pub fn split_sentences(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        if matches!(chars[i], '.' | '!' | '?') {
            let mut end = i + 1;
            while end < chars.len() && matches!(chars[end], '.' | '!' | '?' | '"' | '\'' | ')') {
                end += 1;
            }
            let at_end = end == chars.len();
            let next_starts_sentence = end + 1 < chars.len()
                && chars[end] == ' '
                && (chars[end + 1].is_uppercase()
                    || chars[end + 1].is_ascii_digit()
                    || chars[end + 1] == '"');
            let candidate: String = chars[start..end].iter().collect();
            let last_word = candidate
                .split_whitespace()
                .last()
                .unwrap_or("")
                .to_lowercase();
            let abbreviation = chars[i] == '.'
                && (ABBREVIATIONS.contains(&last_word.as_str())
                    || (last_word.len() == 2 && last_word.starts_with(char::is_alphabetic)));
            if at_end || (next_starts_sentence && !abbreviation) {
                push_sentence(&mut sentences, &candidate);
                start = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    let rest: String = chars[start..].iter().collect();
    push_sentence(&mut sentences, &rest);
    sentences
}

fn push_sentence(sentences: &mut Vec<String>, raw: &str) {
    let trimmed = raw.trim();
    if !trimmed.chars().any(char::is_alphanumeric) {
        return;
    }
    let mut chars = trimmed.chars();
    let mut sentence: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return,
    };
    if !sentence.ends_with(['.', '!', '?', '"', '\'', ')']) {
        sentence.push('.');
    }
    sentences.push(sentence);
}

// ---------------------------------------------------------------------------------------------
// transcribe, merge

/// The lower-case words of `text`: runs of letters and digits, keeping apostrophes and hyphens
/// inside a word ("let's", "end-to-end").
pub fn tokenize(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let joins = matches!(c, '\'' | '-')
            && !word.is_empty()
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
        if c.is_alphanumeric() || joins {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// One segment per sentence, with its words.
pub fn transcribe(track: &PaddedTrack) -> TrackTranscript {
    TrackTranscript {
        speaker: track.speaker.clone(),
        segments: track
            .sentences
            .iter()
            .map(|s| Segment {
                speaker: track.speaker.clone(),
                start: s.start,
                text: s.text.clone(),
                words: tokenize(&s.text),
            })
            .filter(|s| !s.words.is_empty())
            .collect(),
    }
}

/// All segments ordered by start time (ties keep the order of `tracks`, then of the track).
pub fn merge(tracks: &[TrackTranscript]) -> Transcript {
    let mut segments: Vec<Segment> = tracks.iter().flat_map(|t| t.segments.clone()).collect();
    segments.sort_by(|a, b| a.start.total_cmp(&b.start)); // stable
    let mut speakers: Vec<String> = Vec::new();
    for s in &segments {
        if !speakers.contains(&s.speaker) {
            speakers.push(s.speaker.clone());
        }
    }
    let word_count = segments.iter().map(|s| s.words.len() as u32).sum();
    let duration = segments
        .iter()
        .map(|s| s.start + (s.words.len() as u64 * TENTHS_PER_WORD) as f64 / 10.0)
        .fold(0.0, f64::max);
    Transcript {
        segments,
        speakers,
        word_count,
        duration: (duration * 10.0).round() / 10.0,
    }
}

// ---------------------------------------------------------------------------------------------
// topics, title, summary

/// Words that carry no topic: English function words and meeting small talk.
#[rustfmt::skip]
const STOPWORDS: &[&str] = &[
    "about", "above", "after", "again", "against", "all", "also", "and", "any", "anything", "are",
    "around", "asked", "back", "because", "been", "before", "being", "below", "between", "both",
    "but", "can", "cannot", "could", "day", "did", "does", "doing", "done", "down", "during",
    "each", "else", "end", "even", "every", "everyone", "everything", "exactly", "few", "for",
    "from", "further", "get", "gets", "good", "got", "had", "has", "have", "having", "her", "here",
    "hers", "him", "his", "how", "instead", "into", "its", "itself", "just", "keep", "know",
    "last", "least", "less", "like", "long", "lot", "make", "many", "may", "maybe", "mean",
    "means", "more", "morning", "most", "much", "must", "need", "new", "nothing", "now", "off",
    "okay", "once", "one", "only", "other", "our", "ours", "out", "over", "own", "please",
    "rather", "real", "really", "right", "said", "same", "say", "see", "send", "she", "short",
    "should", "since", "some", "something", "still", "such", "sure", "take", "than", "thanks",
    "that", "the", "their", "theirs", "them", "then", "there", "these", "they", "thing", "things",
    "think", "this", "those", "though", "through", "today", "too", "two", "under", "until", "very",
    "want", "was", "way", "well", "were", "what", "when", "where", "whether", "which", "while",
    "who", "whole", "whom", "why", "will", "with", "within", "without", "would", "yes", "yet",
    "you", "your", "yours", "yourself",
];

/// The keywords of every segment: words of three letters or more that are not stop words,
/// numbers or contractions; possessives lose their `'s`, and a plural whose singular also occurs
/// in the transcript counts as the singular ("invoices" as "invoice").
pub fn keywords(transcript: &Transcript) -> Vec<Vec<String>> {
    let stopwords: BTreeSet<&str> = STOPWORDS.iter().copied().collect();
    let candidates: Vec<Vec<String>> = transcript
        .segments
        .iter()
        .map(|s| {
            s.words
                .iter()
                .map(|w| w.strip_suffix("'s").unwrap_or(w))
                .filter(|w| {
                    w.chars().count() >= 3
                        && !w.contains('\'')
                        && !w.chars().all(|c| c.is_ascii_digit() || c == '-')
                        && !stopwords.contains(w)
                })
                .map(str::to_string)
                .collect()
        })
        .collect();
    let vocabulary: BTreeSet<&str> = candidates.iter().flatten().map(String::as_str).collect();
    let singular = |w: &str| -> Option<String> {
        let stem = w.strip_suffix('s')?;
        let plain_plural = !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is");
        (plain_plural && stem.chars().count() >= 3 && vocabulary.contains(stem))
            .then(|| stem.to_string())
    };
    candidates
        .iter()
        .map(|words| {
            words
                .iter()
                .map(|w| singular(w).unwrap_or_else(|| w.clone()))
                .collect()
        })
        .collect()
}

/// The `limit` most frequent keywords, most frequent first, ties alphabetically.
pub fn topics(transcript: &Transcript, limit: u32) -> Vec<Topic> {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for word in keywords(transcript).into_iter().flatten() {
        *counts.entry(word).or_default() += 1;
    }
    let mut topics: Vec<Topic> = counts
        .into_iter()
        .map(|(word, count)| Topic { word, count })
        .collect();
    // BTreeMap order is alphabetical and the sort is stable: ties stay alphabetical.
    topics.sort_by_key(|t| std::cmp::Reverse(t.count));
    topics.truncate(limit as usize);
    topics
}

/// "a", "a and b", "a, b and c".
fn english_list(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A title from the three top topics, after `hint` when given.
pub fn title(topics: &[Topic], hint: Option<&str>) -> String {
    let hint = hint.map(str::trim).filter(|h| !h.is_empty());
    let top: Vec<&str> = topics.iter().take(3).map(|t| t.word.as_str()).collect();
    let list = english_list(&top);
    match (hint, list.is_empty()) {
        (Some(hint), true) => hint.to_string(),
        (Some(hint), false) => format!("{hint}: {list}"),
        (None, true) => "Untitled meeting".to_string(),
        (None, false) => capitalize(&list),
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `m:ss` of a time in seconds.
pub fn clock(seconds: f64) -> String {
    let total = seconds.max(0.0).floor() as u64;
    format!("{}:{:02}", total / 60, total % 60)
}

/// The `limit` segments with the highest density of topic words (topic words / words; segments
/// of at least five words, or all of them when none is that long), in transcript order, one line
/// each: `[m:ss] speaker: text`. Ties go to more topic words, then to the earlier segment.
pub fn summary(transcript: &Transcript, topics: &[Topic], limit: u32) -> String {
    let topic_words: BTreeSet<&str> = topics.iter().map(|t| t.word.as_str()).collect();
    let keywords = keywords(transcript);
    let long_enough = |s: &Segment| s.words.len() >= MIN_SUMMARY_WORDS;
    let any_long = transcript.segments.iter().any(long_enough);
    // (index, topic words, words)
    let mut scored: Vec<(usize, usize, usize)> = transcript
        .segments
        .iter()
        .zip(&keywords)
        .enumerate()
        .filter(|(_, (s, _))| !any_long || long_enough(s))
        .map(|(i, (s, k))| {
            let hits = k
                .iter()
                .filter(|w| topic_words.contains(w.as_str()))
                .count();
            (i, hits, s.words.len().max(1))
        })
        .collect();
    // hits_a / len_a > hits_b / len_b  <=>  hits_a * len_b > hits_b * len_a (exact, no floats)
    scored.sort_by(|a, b| {
        (b.1 * a.2)
            .cmp(&(a.1 * b.2))
            .then(b.1.cmp(&a.1))
            .then(a.0.cmp(&b.0))
    });
    let mut picked: Vec<usize> = scored
        .into_iter()
        .take(limit as usize)
        .map(|(i, _, _)| i)
        .collect();
    picked.sort_unstable();
    picked
        .into_iter()
        .map(|i| {
            let s = &transcript.segments[i];
            format!("[{}] {}: {}", clock(s.start), s.speaker, s.text)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// reports

/// Readable text for failed steps (step name, error).
pub fn failure_report(failures: &[(String, String)]) -> String {
    if failures.is_empty() {
        return "no step failed".to_string();
    }
    let mut text = format!(
        "{} step{} failed:",
        failures.len(),
        if failures.len() == 1 { "" } else { "s" }
    );
    for (step, error) in failures {
        text.push_str(&format!("\n  - {step}: {error}"));
    }
    text
}

/// The pipeline's report.
pub fn report(
    title: String,
    summary: String,
    topics: &[Topic],
    transcript: &Transcript,
    failed: Vec<TrackFailure>,
) -> Report {
    Report {
        title,
        summary,
        topics: topics.iter().map(|t| t.word.clone()).collect(),
        speakers: transcript.speakers.clone(),
        segments: transcript.segments.len() as u32,
        words: transcript.word_count,
        failed,
    }
}

/// Pads, transcribes and merges tracks in one go (the DAG adapter `transcribe-pair`).
pub fn transcribe_all(tracks: &[Track]) -> Transcript {
    let transcripts: Vec<TrackTranscript> = tracks.iter().map(|t| transcribe(&pad(t))).collect();
    merge(&transcripts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(speaker: &str, text: &str) -> Track {
        Track {
            speaker: speaker.into(),
            text: text.into(),
        }
    }

    fn meeting() -> Vec<Track> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tracks");
        ["alice", "bob", "carol"]
            .iter()
            .map(|s| {
                track(
                    s,
                    &std::fs::read_to_string(format!("{dir}/{s}.txt")).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn tokenize_keeps_inner_apostrophes_and_hyphens() {
        assert_eq!(
            tokenize("Let's ship it end-to-end -- at 10:30, OK? 'quoted'"),
            [
                "let's",
                "ship",
                "it",
                "end-to-end",
                "at",
                "10",
                "30",
                "ok",
                "quoted"
            ]
        );
        assert_eq!(tokenize("  ...  "), Vec::<String>::new());
        assert_eq!(tokenize("Über straße"), ["über", "straße"]);
    }

    #[test]
    fn fetch_normalizes_and_injects_failures() {
        let t = fetch(
            &track(
                " bob ",
                "\u{feff}Hello\r\nworld  \r\n\r\n\r\n\tAgain #flaky",
            ),
            2,
        )
        .unwrap();
        assert_eq!(t, track("bob", "Hello\nworld\n\nAgain"));
        assert!(matches!(
            fetch(&track("bob", "x #flaky"), 1),
            Err(FetchError::Retryable(_))
        ));
        for attempt in 1..4 {
            assert!(matches!(
                fetch(&track("bob", "x #broken"), attempt),
                Err(FetchError::Rejected(_))
            ));
        }
        assert!(matches!(
            fetch(&track("", "x"), 1),
            Err(FetchError::Rejected(_))
        ));
        assert!(matches!(
            fetch(&track("bob", " \n "), 1),
            Err(FetchError::Rejected(_))
        ));
    }

    #[test]
    fn fetch_error_has_the_wit_json_shape() {
        let json = serde_json::to_value(FetchError::Retryable("x".into())).unwrap();
        assert_eq!(json, serde_json::json!({ "retryable": "x" }));
        assert_eq!(FetchError::Rejected("y".into()).to_string(), "rejected: y");
    }

    #[test]
    fn sentences_split_on_terminal_punctuation_only() {
        assert_eq!(
            split_sentences(&normalize_punctuation(
                "we ship on thursday , e.g. at 9. Dr. Smith agrees ! Really? yes"
            )),
            [
                "We ship on thursday, e.g. at 9.",
                "Dr. Smith agrees!",
                "Really? yes."
            ]
        );
        assert_eq!(
            split_sentences("Version 2.3 is out. It “works”… Mostly"),
            ["Version 2.3 is out.", "It “works”… Mostly."]
        );
    }

    #[test]
    fn pad_uses_cues_then_word_counts() {
        let padded = pad(&track(
            "ann",
            "[0:10] One two three. Four five.\n\n[0:12] Six.",
        ));
        let starts: Vec<f64> = padded.sentences.iter().map(|s| s.start).collect();
        // 10.0 + 3 words * 0.4 + 0.4 = 11.6; then 11.6 + 2 * 0.4 + 0.4 = 12.8 > cue 12.
        assert_eq!(starts, [10.0, 11.6, 12.8]);
        assert_eq!(padded.duration, 13.2);
        assert_eq!(
            pad(&track("ann", "No cue here. None.")).sentences[1].start,
            1.6
        );
        // Not a cue: stays text.
        assert_eq!(
            pad(&track("ann", "[note] ok")).sentences[0].text,
            "[note] ok."
        );
    }

    #[test]
    fn merge_interleaves_by_start_time() {
        let tracks = meeting();
        let transcript = transcribe_all(&tracks);
        let starts: Vec<f64> = transcript.segments.iter().map(|s| s.start).collect();
        assert!(starts.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(transcript.speakers, ["alice", "bob", "carol"]);
        assert_eq!(transcript.segments[0].speaker, "alice");
        assert_eq!(transcript.segments[2].speaker, "bob");
        let words: usize = tracks.iter().map(|t| tokenize(&t.text).len()).sum();
        // The cue marks "[m:ss]" tokenize to two numbers each; they are not spoken words.
        let cues: usize = tracks.iter().map(|t| t.text.matches("] ").count()).sum();
        assert_eq!(transcript.word_count as usize, words - 2 * cues);
    }

    #[test]
    fn topics_count_keywords_and_break_ties_alphabetically() {
        let transcript = merge(&[transcribe(&pad(&track(
            "ann",
            "The invoices table. One invoice, the migration! Migration batches; zebra apple.",
        )))]);
        let topics = topics(&transcript, 4);
        let pairs: Vec<(&str, u32)> = topics.iter().map(|t| (t.word.as_str(), t.count)).collect();
        assert_eq!(
            pairs,
            [
                ("invoice", 2),
                ("migration", 2),
                ("apple", 1),
                ("batches", 1)
            ]
        );
    }

    #[test]
    fn meeting_topics_title_and_summary() {
        let transcript = transcribe_all(&meeting());
        let topics = topics(&transcript, 5);
        let words: Vec<&str> = topics.iter().map(|t| t.word.as_str()).collect();
        eprintln!("{topics:?}");
        assert_eq!(words[..3], ["invoice", "migration", "release"]);
        assert_eq!(
            title(&topics, Some("Billing sync")),
            "Billing sync: invoice, migration and release"
        );
        assert_eq!(title(&topics, None), "Invoice, migration and release");
        assert_eq!(title(&[], None), "Untitled meeting");
        let summary = summary(&transcript, &topics, 3);
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines.len(), 3);
        // In transcript order.
        let times: Vec<&str> = lines.iter().map(|l| &l[..6]).collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted);
        eprintln!("{topics:?}\n{summary}");
    }

    #[test]
    fn summary_prefers_dense_sentences() {
        let transcript = merge(&[transcribe(&pad(&track(
            "ann",
            "Billing billing billing is here now. Short. The weather is nice and warm today \
             outside. We talked billing for a while today.",
        )))]);
        let topics = vec![Topic {
            word: "billing".into(),
            count: 4,
        }];
        assert_eq!(
            summary(&transcript, &topics, 2),
            "[0:00] ann: Billing billing billing is here now.\n\
             [0:07] ann: We talked billing for a while today."
        );
    }

    #[test]
    fn failure_report_lists_steps() {
        assert_eq!(failure_report(&[]), "no step failed");
        assert_eq!(
            failure_report(&[("track-a".into(), "boom".into())]),
            "1 step failed:\n  - track-a: boom"
        );
    }
}
