//! `hypergraph:task/log` and the capture of the guest's stdout and stderr.
//!
//! Every line a guest emits, through the log interface or by writing to stdout/stderr, becomes one
//! log line of the attempt and one `log` journal entry. The deployment's limits bound what is kept:
//! a line longer than `max_log_line_bytes` is cut there (with a marker saying how much was cut),
//! and at most `max_log_lines` lines and `max_log_bytes` bytes are kept per attempt; further lines
//! are counted, and [`LogSink::finish`] appends a visible marker line and a `log.dropped` journal
//! entry with the count. Output without a newline is split into lines of at most
//! [`MAX_LINE_BYTES`] so a guest cannot make the host buffer unbounded output.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use hypergraph_core::model::LogRecord;
use hypergraph_core::time::now_micros;

use super::bindings::hypergraph::task::log::{self, Level};
use crate::journal::{Journal, LogEntry};
use crate::limits::{format_bytes, Limits};

/// Longest line kept; longer output is split.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The capped, journaled log of one attempt: this capability's per-instance state and view.
/// Clones share the same log.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<Mutex<LogBuffer>>,
}

struct LogBuffer {
    max_lines: u32,
    max_line_bytes: usize,
    max_bytes: u64,
    /// Lines emitted so far, including those replayed from a resumed journal.
    count: u32,
    /// Bytes of the lines emitted so far (after cutting), likewise.
    bytes: u64,
    /// Lines to store: those emitted live.
    lines: Vec<LogRecord>,
    dropped: u64,
    journal: Journal,
    /// Partial lines of stdout (0) and stderr (1).
    partial: [Vec<u8>; 2],
}

/// Which standard stream a [`StdStream`] captures.
#[derive(Clone, Copy, Debug)]
enum Std {
    Out = 0,
    Err = 1,
}

impl Std {
    fn stream(self) -> &'static str {
        match self {
            Std::Out => "stdout",
            Std::Err => "stderr",
        }
    }
    fn level(self) -> &'static str {
        match self {
            Std::Out => "info",
            Std::Err => "warn",
        }
    }
}

impl LogSink {
    /// A sink keeping what `limits` allow (lines, bytes per line, bytes per attempt),
    /// journaling each kept line into `journal`.
    pub fn new(limits: &Limits, journal: Journal) -> LogSink {
        LogSink {
            inner: Arc::new(Mutex::new(LogBuffer {
                max_lines: limits.max_log_lines,
                max_line_bytes: usize::try_from(limits.max_log_line_bytes).unwrap_or(usize::MAX),
                max_bytes: limits.max_log_bytes,
                count: 0,
                bytes: 0,
                lines: Vec::new(),
                dropped: 0,
                journal,
                partial: [Vec::new(), Vec::new()],
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogBuffer> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one line (without its newline).
    pub fn line(&self, stream: &str, level: &str, message: &str) {
        self.lock().push(stream, level, message);
    }

    fn write_std(&self, which: Std, bytes: &[u8]) {
        let mut buffer = self.lock();
        let mut partial = std::mem::take(&mut buffer.partial[which as usize]);
        for &byte in bytes {
            if byte == b'\n' {
                buffer.push_bytes(which, &partial);
                partial.clear();
            } else {
                partial.push(byte);
                if partial.len() >= MAX_LINE_BYTES {
                    buffer.push_bytes(which, &partial);
                    partial.clear();
                }
            }
        }
        buffer.partial[which as usize] = partial;
    }

    /// Takes the complete lines kept so far (a workflow checkpoint stores them); partial lines
    /// stay until they end or [`LogSink::finish`].
    pub fn take_lines(&self) -> Vec<LogRecord> {
        std::mem::take(&mut self.lock().lines)
    }

    /// Flushes partial stdout/stderr lines, adds the dropped-lines marker if any line was dropped,
    /// and returns the kept lines.
    pub fn finish(&self) -> Vec<LogRecord> {
        let mut buffer = self.lock();
        for which in [Std::Out, Std::Err] {
            let partial = std::mem::take(&mut buffer.partial[which as usize]);
            if !partial.is_empty() {
                buffer.push_bytes(which, &partial);
            }
        }
        if buffer.dropped > 0 {
            let count = buffer.dropped;
            buffer.journal.emit(LogEntry::Dropped { count });
            let seq = buffer.count;
            let message = format!(
                "[hypergraph] {count} more log line(s) dropped: the caps are {} lines and {} per \
                 attempt (deployment policy max_log_lines, max_log_bytes)",
                buffer.max_lines,
                format_bytes(buffer.max_bytes)
            );
            buffer.lines.push(LogRecord {
                seq,
                at: now_micros(),
                stream: "hypergraph".into(),
                level: "warn".into(),
                message,
            });
        }
        std::mem::take(&mut buffer.lines)
    }
}

impl LogBuffer {
    fn push(&mut self, stream: &str, level: &str, message: &str) {
        let message = cut(message, self.max_line_bytes);
        if self.count >= self.max_lines || self.bytes + message.len() as u64 > self.max_bytes {
            self.dropped += 1;
            return;
        }
        let seq = self.count;
        self.count += 1;
        self.bytes += message.len() as u64;
        let message = message.as_ref();
        let new = self.journal.emit(LogEntry::Line {
            stream: stream.to_string(),
            level: level.to_string(),
            message: message.to_string(),
        });
        if !new {
            // Replayed from a resumed workflow's journal: stored by an earlier activation.
            return;
        }
        self.lines.push(LogRecord {
            seq,
            at: now_micros(),
            stream: stream.to_string(),
            level: level.to_string(),
            message: message.to_string(),
        });
    }

    fn push_bytes(&mut self, which: Std, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        self.push(which.stream(), which.level(), text);
    }
}

/// `message` cut to at most `max` bytes (at a character boundary), with a marker saying how many
/// bytes were cut; unchanged when it fits.
fn cut(message: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if message.len() <= max {
        return message.into();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{} [hypergraph: line cut at {}, {} more bytes dropped; deployment policy max_log_line_bytes]",
        &message[..end],
        format_bytes(max as u64),
        message.len() - end
    )
    .into()
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

impl log::Host for LogSink {
    fn log(&mut self, level: Level, message: String) {
        self.line("log", level_name(level), &message);
    }
}

/// The interfaces this module serves.
pub const INTERFACES: &[&str] = &["hypergraph:task/log@0.1.0"];

/// Registers `hypergraph:task/log` in `linker`, writing to the sink `project` finds in the store
/// data (stdout and stderr reach it through [`StdStream`]s in the WASI context).
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut LogSink,
) -> anyhow::Result<()> {
    log::add_to_linker::<T, HasSelf<LogSink>>(linker, project)?;
    Ok(())
}

/// A guest stdout or stderr that feeds a [`LogSink`]. Writes complete synchronously.
#[derive(Clone)]
pub struct StdStream {
    sink: LogSink,
    which: Std,
}

impl StdStream {
    /// The guest's stdout, feeding `sink`.
    pub fn stdout(sink: &LogSink) -> StdStream {
        StdStream {
            sink: sink.clone(),
            which: Std::Out,
        }
    }

    /// The guest's stderr, feeding `sink`.
    pub fn stderr(sink: &LogSink) -> StdStream {
        StdStream {
            sink: sink.clone(),
            which: Std::Err,
        }
    }
}

impl IsTerminal for StdStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StdStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for StdStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.sink.write_std(self.which, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for StdStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StdStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.sink.write_std(self.which, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Entry;

    #[test]
    fn splits_stdout_into_lines_and_flushes_partial() {
        let sink = LogSink::new(&lines_cap(10), Journal::default());
        sink.write_std(Std::Out, b"one\ntw");
        sink.write_std(Std::Out, b"o\r\nthree");
        sink.write_std(Std::Err, b"oops\n");
        let lines = sink.finish();
        let text: Vec<_> = lines
            .iter()
            .map(|l| (l.stream.as_str(), l.message.as_str()))
            .collect();
        assert_eq!(
            text,
            [
                ("stdout", "one"),
                ("stdout", "two"),
                ("stderr", "oops"),
                ("stdout", "three")
            ]
        );
        assert_eq!(lines[2].level, "warn");
        assert!(lines.iter().enumerate().all(|(i, l)| l.seq == i as u32));
    }

    #[test]
    fn cap_keeps_first_lines_and_adds_marker_and_journal_entry() {
        let journal = Journal::default();
        let sink = LogSink::new(&lines_cap(3), journal.clone());
        for i in 0..10 {
            sink.line("log", "info", &format!("line {i}"));
        }
        let lines = sink.finish();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2].message, "line 2");
        assert!(
            lines[3].message.contains("7 more log line(s) dropped"),
            "{:?}",
            lines[3]
        );
        let entries = journal.take();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[3], LogEntry::Dropped { count: 7 }.into());
    }

    #[test]
    fn unbounded_line_is_split() {
        let sink = LogSink::new(&lines_cap(100), Journal::default());
        sink.write_std(Std::Out, &vec![b'x'; MAX_LINE_BYTES * 2 + 5]);
        let lines = sink.finish();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2].message.len(), 5);
    }

    #[test]
    fn long_lines_are_cut_and_bytes_per_attempt_are_capped() {
        let journal = Journal::default();
        let limits = Limits {
            max_log_line_bytes: 1024,
            max_log_bytes: 4096,
            ..Limits::default()
        };
        let sink = LogSink::new(&limits, journal.clone());
        // A multi-byte character straddles the cut: the line is cut before it.
        let long = format!("{}é{}", "a".repeat(1023), "b".repeat(100_000));
        sink.line("log", "info", &long);
        for _ in 0..10 {
            sink.line("log", "info", &"c".repeat(1000));
        }
        let lines = sink.finish();
        assert!(
            lines[0].message.starts_with(&"a".repeat(1023)),
            "{}",
            &lines[0].message[..40]
        );
        assert!(
            lines[0]
                .message
                .contains("line cut at 1 KiB, 100002 more bytes dropped"),
            "{}",
            &lines[0].message[1020..]
        );
        let kept: u64 = lines[..lines.len() - 1]
            .iter()
            .map(|l| l.message.len() as u64)
            .sum();
        assert!(kept <= 4096, "{kept} bytes kept");
        let marker = lines.last().unwrap();
        assert!(
            marker.message.contains("more log line(s) dropped"),
            "{marker:?}"
        );
        // The journal holds the cut line, so a replay cuts the same way and matches.
        let entries = journal.take();
        assert!(
            matches!(&entries[0], Entry::Log(LogEntry::Line { message, .. }) if message == &lines[0].message)
        );
    }

    fn lines_cap(max_log_lines: u32) -> Limits {
        Limits {
            max_log_lines,
            ..Limits::default()
        }
    }
}
