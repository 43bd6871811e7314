//! Portable replay bundles: one self-contained file per run.
//!
//! `hypergraph runs export <run-id> -o <file>` writes a [`Bundle`] and `hypergraph replay <file>`
//! reads it back, on any machine, without the database: the file holds the component bytes, the
//! task's WIT signature and the whole [`RecordedRun`] (inputs, journals, outputs, errors, logs,
//! metadata). The format is specified byte for byte in `docs/bundle-format.md`; in short, a
//! four-line text header followed by a JSON payload:
//!
//! ```text
//! hypergraph-bundle 1
//! sha256 <64 lowercase hex digits: sha256 of the payload>
//! length <decimal byte length of the payload>
//!
//! {"hypergraph_version":"0.1.0","exported_at":...,"signature":"...","run":{...},"component":"<base64>"}
//! ```
//!
//! [`from_bytes`] checks everything it can before trusting a byte (magic line, version, length,
//! checksum, JSON shape, and that the component is the one the run is pinned to), reports the
//! first problem as a [`BundleError`] whose message says what is wrong, and never panics, whatever
//! the input.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::engine::digest;
use crate::registry::function_of;
use crate::replay::RecordedRun;
use crate::store::{now_micros, Micros};
use crate::Hypergraph;

/// The bundle format version this hypergraph writes, and the only one it reads.
///
/// It is bumped for any change an older reader would misread: a new header layout, a renamed
/// or retyped field, a new required field. Adding an optional field to the payload (one that
/// readers default when absent) keeps the version: readers ignore payload fields they do not
/// know.
pub const FORMAT_VERSION: u32 = 1;

/// The start of the first line of every bundle, followed by the decimal format version.
const MAGIC: &[u8] = b"hypergraph-bundle ";

/// Longest header line a reader accepts (the longest valid one, `sha256 <64 hex>`, is 71 bytes).
const MAX_HEADER_LINE: usize = 128;

/// Everything needed to replay one run anywhere: the run as recorded, and the component it is
/// pinned to.
///
/// A bundle read by [`from_bytes`] or [`read`] is consistent: `sha256(component) == run.digest`.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// The run: task name (`run.task`), input, every step's attempts with their journals and
    /// logs, output or error, policy and metadata.
    pub run: RecordedRun,
    /// The bytes of the component the run is pinned to; their sha256 (lowercase hex) is
    /// `run.digest`.
    pub component: Vec<u8>,
    /// The WIT signature of the run's task as rendered by
    /// [`render_func`](crate::convert::render_func), e.g. `func(name: string) -> string`.
    pub signature: String,
    /// When the bundle was made, in microseconds since the Unix epoch.
    pub exported_at: Micros,
    /// The version of the hypergraph that made the bundle (informational only).
    pub hypergraph_version: String,
}

impl Bundle {
    /// A bundle of `run` and its `component`, stamped with the current time and this
    /// hypergraph's version. Does not check that `component` matches `run.digest` ([`write()`]
    /// does).
    pub fn new(run: RecordedRun, component: Vec<u8>, signature: String) -> Bundle {
        Bundle {
            run,
            component,
            signature,
            exported_at: now_micros(),
            hypergraph_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

impl Hypergraph {
    /// The bundle of run `id`: everything stored about it plus its pinned component's bytes and
    /// its task's signature.
    pub async fn export_run(&self, id: &str) -> Result<Bundle> {
        let run = crate::replay::load(self.store.as_ref(), id).await?;
        let component = self.component_bytes(&run.digest).await?;
        let prepared = self.prepared_digest(&run.digest).await?;
        let signature = prepared
            .task(function_of(&run.task))
            .map(|t| t.export.signature.clone())
            .unwrap_or_default();
        Ok(Bundle::new(run, component, signature))
    }
}

/// Why some bytes are not a readable bundle. Each message says what is wrong in words a user
/// can act on; [`read`] adds the file's path in front.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The bytes do not start with the `hypergraph-bundle ` magic line (an empty file, a JSON
    /// file, a component, random bytes, or a file cut within its first 18 bytes).
    #[error(
        "this is not a hypergraph bundle: a bundle starts with the line `hypergraph-bundle <version>` \
         (bundles are written by `hypergraph runs export <run-id> -o <file>`)"
    )]
    NotABundle,
    /// The bundle has a format version this reader does not know.
    #[error("{}", unsupported_message(*found, *supported))]
    UnsupportedVersion {
        /// The version on the bundle's first line.
        found: u32,
        /// The version this reader supports, [`FORMAT_VERSION`].
        supported: u32,
    },
    /// The file ends before the payload the header promises.
    #[error(
        "the bundle is truncated: the header promises {expected} bytes of payload, the file has \
         {found}; it was probably cut short while being copied, export the run again"
    )]
    Truncated {
        /// Payload bytes promised by the header's `length` line.
        expected: u64,
        /// Payload bytes present in the file.
        found: u64,
    },
    /// The payload's sha256 differs from the header's `sha256` line: the file was altered.
    #[error(
        "the bundle is corrupted: its header says the payload's sha256 is {expected}, but it is \
         {found}; the file was modified after it was exported, export the run again"
    )]
    ChecksumMismatch {
        /// The checksum on the header's `sha256` line.
        expected: String,
        /// The sha256 of the payload actually present.
        found: String,
    },
    /// The component in the bundle is not the one the run is pinned to (`run.digest`).
    #[error(
        "the bundle is inconsistent: the run is pinned to the component with digest {expected}, \
         but the component in the bundle has digest {found}"
    )]
    ComponentDigestMismatch {
        /// `run.digest`.
        expected: String,
        /// The sha256 of the component bytes in the bundle.
        found: String,
    },
    /// The header or the payload does not follow the format (including a file cut inside its
    /// header, invalid JSON, a missing field, invalid base64); the string says what and where.
    #[error("the bundle is malformed: {0}")]
    Malformed(String),
}

fn unsupported_message(found: u32, supported: u32) -> String {
    let hint = if found > supported {
        "it was written by a newer hypergraph; use a hypergraph at least as new to replay it"
    } else {
        "it was written by an older hypergraph whose format is no longer readable; export the run \
         again with this version, or replay it with the hypergraph that wrote it"
    };
    format!(
        "the bundle has format version {found}, but this hypergraph ({}) reads only format \
         version {supported}: {hint}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The payload, as written: borrowed, with the component already base64-encoded. Field order is
/// the order in the file (small fields first, the component last).
#[derive(Serialize)]
struct PayloadOut<'a> {
    hypergraph_version: &'a str,
    exported_at: Micros,
    signature: &'a str,
    run: &'a RecordedRun,
    component: String,
}

/// The payload, as read. Unknown fields are ignored (see [`FORMAT_VERSION`]).
#[derive(Deserialize)]
struct PayloadIn {
    hypergraph_version: String,
    exported_at: Micros,
    signature: String,
    run: RecordedRun,
    component: String,
}

/// Serializes `bundle` to the bundle format (header and payload). Does not check that the
/// component matches `run.digest`; a mismatched bundle is rejected when read.
pub fn to_bytes(bundle: &Bundle) -> Vec<u8> {
    let payload = PayloadOut {
        hypergraph_version: &bundle.hypergraph_version,
        exported_at: bundle.exported_at,
        signature: &bundle.signature,
        run: &bundle.run,
        component: BASE64.encode(&bundle.component),
    };
    let mut json = serde_json::to_vec(&payload)
        .expect("a bundle serializes: every map key is a string and no value can fail");
    json.push(b'\n');
    frame(&json)
}

/// Prefixes `payload` with the header describing it.
fn frame(payload: &[u8]) -> Vec<u8> {
    let header = format!(
        "hypergraph-bundle {FORMAT_VERSION}\nsha256 {}\nlength {}\n\n",
        hex::encode(Sha256::digest(payload)),
        payload.len()
    );
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Parses and verifies a bundle.
///
/// Checks, in order, and reports the first failure: the magic line ([`BundleError::NotABundle`]),
/// the format version ([`BundleError::UnsupportedVersion`]), the rest of the header
/// ([`BundleError::Malformed`]), the payload length ([`BundleError::Truncated`], or `Malformed`
/// for bytes beyond it), the payload checksum ([`BundleError::ChecksumMismatch`]), the payload
/// JSON and base64 (`Malformed`, with the parser's message), and that the component's sha256 is
/// `run.digest` ([`BundleError::ComponentDigestMismatch`]). Never panics.
pub fn from_bytes(bytes: &[u8]) -> Result<Bundle, BundleError> {
    if !bytes.starts_with(MAGIC) {
        return Err(BundleError::NotABundle);
    }
    let mut header = Header {
        bytes,
        pos: MAGIC.len(),
    };

    let version = header.line("the first line (`hypergraph-bundle <version>`)")?;
    let version = parse_decimal(version)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            if version.ends_with(b"\r") {
                BundleError::Malformed(
                    "the first line ends with a carriage return: the file's line endings were \
                     converted (e.g. by a text editor or git's autocrlf); bundles are binary \
                     files, export the run again"
                        .into(),
                )
            } else {
                BundleError::Malformed(format!(
                    "the first line should be `hypergraph-bundle <version>`, but the version is `{}`",
                    show(version)
                ))
            }
        })?;
    if version != FORMAT_VERSION {
        return Err(BundleError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }

    let line = header.line("the second line (`sha256 <hex>`)")?;
    let checksum = line
        .strip_prefix(b"sha256 ")
        .filter(|hex| hex.len() == 64 && hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| {
            BundleError::Malformed(format!(
                "the second line should be `sha256 ` and 64 lowercase hex digits, found `{}`",
                show(line)
            ))
        })?;
    let checksum = String::from_utf8_lossy(checksum).into_owned();

    let line = header.line("the third line (`length <bytes>`)")?;
    let length = line
        .strip_prefix(b"length ")
        .and_then(parse_decimal)
        .ok_or_else(|| {
            BundleError::Malformed(format!(
                "the third line should be `length ` and a decimal number of bytes, found `{}`",
                show(line)
            ))
        })?;

    let line = header.line("the blank line that ends the header")?;
    if !line.is_empty() {
        return Err(BundleError::Malformed(format!(
            "the header should end with a blank fourth line, found `{}`",
            show(line)
        )));
    }

    let payload = bytes.get(header.pos..).unwrap_or_default();
    let found = payload.len() as u64;
    if found < length {
        return Err(BundleError::Truncated {
            expected: length,
            found,
        });
    }
    if found > length {
        return Err(BundleError::Malformed(format!(
            "the file has {} bytes after the {length}-byte payload the header promises (was \
             something appended to it?)",
            found - length
        )));
    }

    let actual = hex::encode(Sha256::digest(payload));
    if actual != checksum {
        return Err(BundleError::ChecksumMismatch {
            expected: checksum,
            found: actual,
        });
    }

    let payload: PayloadIn = serde_json::from_slice(payload).map_err(|e| {
        BundleError::Malformed(match e.classify() {
            serde_json::error::Category::Data => format!("the payload's JSON is not a bundle: {e}"),
            _ => format!("the payload is not valid JSON: {e}"),
        })
    })?;
    let component = BASE64.decode(payload.component.as_bytes()).map_err(|e| {
        BundleError::Malformed(format!(
            "the payload's `component` is not valid base64: {e}"
        ))
    })?;
    let actual = digest(&component);
    if actual != payload.run.digest {
        return Err(BundleError::ComponentDigestMismatch {
            expected: payload.run.digest,
            found: actual,
        });
    }
    Ok(Bundle {
        run: payload.run,
        component,
        signature: payload.signature,
        exported_at: payload.exported_at,
        hypergraph_version: payload.hypergraph_version,
    })
}

/// A cursor over the header lines of a bundle.
struct Header<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Header<'a> {
    /// The next line, without its `\n`. `what` names the line for error messages.
    fn line(&mut self, what: &str) -> Result<&'a [u8], BundleError> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let window = &rest[..rest.len().min(MAX_HEADER_LINE + 1)];
        match window.iter().position(|&b| b == b'\n') {
            Some(end) => {
                self.pos += end + 1;
                Ok(&rest[..end])
            }
            None if rest.len() <= MAX_HEADER_LINE => Err(BundleError::Malformed(format!(
                "the file ends inside the header, in {what}, after {} bytes: the bundle is \
                 truncated; export the run again",
                self.bytes.len()
            ))),
            None => Err(BundleError::Malformed(format!(
                "{what} is not followed by a line break within {MAX_HEADER_LINE} bytes, found `{}`",
                show(window)
            ))),
        }
    }
}

/// A non-empty run of ASCII digits (at most 20) as a number; `None` for anything else.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Header bytes made printable for an error message (escaped, at most 80 characters).
fn show(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes).escape_debug().collect();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Writes `bundle` to `path` atomically: into a temporary file next to `path`, flushed to disk,
/// then renamed over `path`. On any failure `path` is left as it was (absent or its old content)
/// and the temporary file is removed. Refuses a bundle whose component is not the one
/// `run.digest` names, as [`read`] would reject it. Errors name `path`.
pub fn write(bundle: &Bundle, path: &Path) -> Result<()> {
    let found = digest(&bundle.component);
    if found != bundle.run.digest {
        bail!(
            "refusing to write the bundle `{}`: run `{}` is pinned to the component with digest \
             {}, but the component given has digest {found}",
            path.display(),
            bundle.run.run_id,
            bundle.run.digest
        );
    }
    let bytes = to_bytes(bundle);
    let name = path.file_name().with_context(|| {
        format!(
            "cannot write the bundle to `{}`: not a file name",
            path.display()
        )
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        uuid::Uuid::now_v7().simple()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e).with_context(|| format!("could not write the bundle `{}`", path.display()));
    }
    // Make the rename itself durable (best effort: not every platform can sync a directory).
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Reads and verifies the bundle at `path` (see [`from_bytes`]). Errors name `path`; a format
/// error keeps its [`BundleError`], reachable with `err.downcast_ref::<BundleError>()`.
pub fn read(path: &Path) -> Result<Bundle> {
    let bytes = fs::read(path)
        .with_context(|| format!("could not read the bundle `{}`", path.display()))?;
    from_bytes(&bytes).with_context(|| format!("could not read the bundle `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::replay::{RecordedAttempt, RecordedStep};
    use crate::store::{JournalRecord, LogRecord, Policy, Status};

    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0 not really a component, but bytes with a digest";

    fn sample() -> Bundle {
        let output = json!({ "greeting": "hello, ada", "n": 3 });
        let run = RecordedRun {
            run_id: "0190f1d2-0000-7000-8000-000000000001".into(),
            task: "hello/greet".into(),
            deployment: "hello".into(),
            version: 2,
            digest: digest(COMPONENT),
            policy: Policy {
                memory_limit_bytes: Some(64 << 20),
                timeout_ms: Some(5_000),
                max_log_lines: None,
                http_allow: vec!["api.example.com".into()],
                retry: crate::retry::RetryPolicy {
                    max_attempts: Some(3),
                    ..Default::default()
                },
                ..Policy::default()
            },
            status: Status::Succeeded,
            input: json!({ "name": "ada", "tags": ["a", "é", "\u{1f600}"] }),
            output: Some(output.clone()),
            error: None,
            meta: vec![
                ("customer".into(), "acme".into()),
                ("env".into(), "prod".into()),
            ],
            created_at: 1_700_000_000_000_000,
            steps: vec![RecordedStep {
                step_id: "0190f1d2-0000-7000-8000-000000000002".into(),
                task: "hello/greet".into(),
                digest: digest(COMPONENT),
                kind: crate::store::DeploymentKind::Component,
                input: json!({ "name": "ada", "tags": ["a", "é", "\u{1f600}"] }),
                attempts: vec![RecordedAttempt {
                    attempt: 1,
                    status: Status::Succeeded,
                    output: Some(output),
                    error: None,
                    journal: vec![
                        JournalRecord {
                            seq: 0,
                            kind: "wall_clock.now".into(),
                            data: r#"{"seconds":1700000000,"nanos":42}"#.into(),
                        },
                        JournalRecord {
                            seq: 1,
                            kind: "random.bytes".into(),
                            data: r#"{"secure":true,"hex":"010203ff"}"#.into(),
                        },
                    ],
                    logs: vec![
                        LogRecord {
                            seq: 0,
                            at: 1_700_000_000_000_100,
                            stream: "log".into(),
                            level: "info".into(),
                            message: "greeting ada".into(),
                        },
                        LogRecord {
                            seq: 1,
                            at: 1_700_000_000_000_200,
                            stream: "stderr".into(),
                            level: "warn".into(),
                            message: "line with \"quotes\", a tab\t and a newline\n".into(),
                        },
                    ],
                }],
            }],
        };
        Bundle {
            run,
            component: COMPONENT.to_vec(),
            signature: "func(name: string, tags: list<string>) -> greeting".into(),
            exported_at: 1_700_000_100_000_000,
            hypergraph_version: "0.1.0".into(),
        }
    }

    /// The header length of `bytes` (up to and including the blank line).
    fn header_len(bytes: &[u8]) -> usize {
        bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .expect("a header")
            + 2
    }

    /// A bundle whose payload is `payload`, with a correct header.
    fn framed_json(payload: &Value) -> Vec<u8> {
        frame(&serde_json::to_vec(payload).unwrap())
    }

    fn sample_payload() -> Value {
        let bytes = to_bytes(&sample());
        serde_json::from_slice(&bytes[header_len(&bytes)..]).unwrap()
    }

    #[test]
    fn round_trip_preserves_everything() {
        let bundle = sample();
        let bytes = to_bytes(&bundle);
        assert_eq!(from_bytes(&bytes), Ok(bundle.clone()));
        // Deterministic: the same bundle gives the same bytes.
        assert_eq!(to_bytes(&bundle), bytes);
    }

    #[test]
    fn round_trip_of_an_empty_component_and_a_failed_run() {
        let mut bundle = sample();
        bundle.component = Vec::new();
        bundle.run.digest = digest(&[]);
        bundle.run.status = Status::Failed;
        bundle.run.output = None;
        bundle.run.error = Some(json!({ "kind": "trap", "message": "unreachable" }));
        bundle.run.steps.clear();
        bundle.run.meta.clear();
        bundle.run.policy = Policy::default();
        assert_eq!(from_bytes(&to_bytes(&bundle)), Ok(bundle));
    }

    #[test]
    fn layout_is_the_documented_one() {
        let bundle = sample();
        let bytes = to_bytes(&bundle);
        let text = std::str::from_utf8(&bytes).expect("a bundle is UTF-8 text");
        let lines: Vec<&str> = text.splitn(5, '\n').collect();
        assert_eq!(lines[0], "hypergraph-bundle 1");
        let payload = lines[4].as_bytes();
        assert_eq!(
            lines[1],
            format!("sha256 {}", hex::encode(Sha256::digest(payload)))
        );
        assert_eq!(lines[2], format!("length {}", payload.len()));
        assert_eq!(lines[3], "");
        assert!(payload.ends_with(b"}\n"), "one JSON line then a newline");
        assert_eq!(payload.iter().filter(|&&b| b == b'\n').count(), 1);

        let json: Value = serde_json::from_slice(payload).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "component",
            "exported_at",
            "hypergraph_version",
            "run",
            "signature",
        ];
        expected.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, expected);
        assert_eq!(json["component"], BASE64.encode(COMPONENT));
        assert_eq!(json["hypergraph_version"], "0.1.0");
        assert_eq!(json["exported_at"], 1_700_000_100_000_000i64);
        assert_eq!(json["signature"], bundle.signature);
        assert_eq!(json["run"], serde_json::to_value(&bundle.run).unwrap());
        // The component comes last, so the readable part is at the start of the line.
        let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap();
        assert!(at("hypergraph_version") < at("run"));
        assert!(at("run_id") < at("component"));
    }

    #[test]
    fn not_a_bundle() {
        let json = serde_json::to_vec_pretty(&sample().run).unwrap();
        let mut random = vec![0u8; 4096];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        rng.fill(&mut random);
        let inputs: Vec<&[u8]> = vec![
            b"",
            b"\n",
            &random,
            &json,
            COMPONENT,
            b"hypergraph",
            b"hypergraph-bundle",
            b"Hypergraph-bundle 1\n",
            b" hypergraph-bundle 1\n",
            b"\xef\xbb\xbfhypergraph-bundle 1\n",
        ];
        for input in inputs {
            assert_eq!(
                from_bytes(input),
                Err(BundleError::NotABundle),
                "{:?}",
                show(input)
            );
        }
        let message = BundleError::NotABundle.to_string();
        assert!(message.contains("not a hypergraph bundle"), "{message}");
    }

    #[test]
    fn unsupported_versions_are_named() {
        let bytes = to_bytes(&sample());
        let body = bytes
            .strip_prefix(b"hypergraph-bundle 1".as_slice())
            .unwrap();
        for (version, found) in [("999", 999), ("2", 2), ("0", 0), ("4294967295", u32::MAX)] {
            let mut other = format!("hypergraph-bundle {version}").into_bytes();
            other.extend_from_slice(body);
            let err = from_bytes(&other).unwrap_err();
            assert_eq!(
                err,
                BundleError::UnsupportedVersion {
                    found,
                    supported: 1
                }
            );
            let message = err.to_string();
            assert!(
                message.contains(&format!("format version {found}")),
                "{message}"
            );
            assert!(message.contains("reads only format version 1"), "{message}");
            if found > 1 {
                assert!(message.contains("newer hypergraph"), "{message}");
            }
        }
        // A future version may lay out its header differently: only the first line is read.
        let err = from_bytes(b"hypergraph-bundle 2\nsomething else entirely\n").unwrap_err();
        assert!(matches!(
            err,
            BundleError::UnsupportedVersion { found: 2, .. }
        ));
    }

    #[test]
    fn bad_version_lines_are_malformed() {
        for first in [
            "hypergraph-bundle \n",
            "hypergraph-bundle one\n",
            "hypergraph-bundle 1.0\n",
            "hypergraph-bundle -1\n",
            "hypergraph-bundle 4294967296\n",
            "hypergraph-bundle 99999999999999999999999\n",
        ] {
            let err = from_bytes(first.as_bytes()).unwrap_err();
            assert!(
                matches!(err, BundleError::Malformed(_)),
                "{first:?}: {err:?}"
            );
        }
        let long = format!("hypergraph-bundle {}", "1".repeat(1000));
        let err = from_bytes(long.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("line break"), "{err}");
    }

    #[test]
    fn converted_line_endings_are_explained() {
        let bytes = to_bytes(&sample());
        let crlf: Vec<u8> = bytes
            .iter()
            .flat_map(|&b| {
                if b == b'\n' {
                    vec![b'\r', b'\n']
                } else {
                    vec![b]
                }
            })
            .collect();
        let err = from_bytes(&crlf).unwrap_err();
        assert!(err.to_string().contains("line endings"), "{err}");
    }

    #[test]
    fn truncated_payloads_say_how_much_is_missing() {
        let bytes = to_bytes(&sample());
        let header = header_len(&bytes);
        let length = (bytes.len() - header) as u64;
        for cut in [
            header,
            header + 1,
            header + 100,
            bytes.len() - 2,
            bytes.len() - 1,
        ] {
            let err = from_bytes(&bytes[..cut]).unwrap_err();
            let found = (cut - header) as u64;
            assert_eq!(
                err,
                BundleError::Truncated {
                    expected: length,
                    found
                }
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "the bundle is truncated: the header promises {length} bytes of payload, the \
                     file has {found}; it was probably cut short while being copied, export the \
                     run again"
                )
            );
        }
    }

    #[test]
    fn truncated_headers_are_reported() {
        let bytes = to_bytes(&sample());
        let header = header_len(&bytes);
        // Cuts inside the magic are indistinguishable from other files.
        for cut in 0..MAGIC.len() {
            assert_eq!(from_bytes(&bytes[..cut]), Err(BundleError::NotABundle));
        }
        // Cuts after it, up to the blank line, say the file ends inside the header.
        for cut in MAGIC.len()..header {
            let err = from_bytes(&bytes[..cut]).unwrap_err();
            let message = err.to_string();
            let BundleError::Malformed(_) = err else {
                panic!("cut at {cut}: {err:?}");
            };
            assert!(
                message.contains("ends inside the header") && message.contains("truncated"),
                "cut at {cut}: {message}"
            );
        }
    }

    #[test]
    fn bytes_after_the_payload_are_rejected() {
        let mut bytes = to_bytes(&sample());
        let length = bytes.len() - header_len(&bytes);
        bytes.extend_from_slice(b"\n");
        let err = from_bytes(&bytes).unwrap_err();
        assert_eq!(
            err,
            BundleError::Malformed(format!(
                "the file has 1 bytes after the {length}-byte payload the header promises (was \
                 something appended to it?)"
            ))
        );
    }

    #[test]
    fn a_flipped_payload_byte_fails_the_checksum() {
        let bytes = to_bytes(&sample());
        let header = header_len(&bytes);
        let expected = hex::encode(Sha256::digest(&bytes[header..]));
        for at in [header, header + 10, bytes.len() - 1] {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x04;
            let err = from_bytes(&corrupt).unwrap_err();
            assert_eq!(
                err,
                BundleError::ChecksumMismatch {
                    expected: expected.clone(),
                    found: hex::encode(Sha256::digest(&corrupt[header..])),
                }
            );
            assert!(err.to_string().contains("corrupted"), "{err}");
        }
        // A flipped byte in the checksum line itself.
        let mut corrupt = bytes.clone();
        let at = bytes.iter().position(|&b| b == b'\n').unwrap() + "\nsha256 ".len();
        corrupt[at] = if corrupt[at] == b'0' { b'1' } else { b'0' };
        assert!(matches!(
            from_bytes(&corrupt),
            Err(BundleError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn a_component_that_is_not_the_pinned_one_is_rejected() {
        // A flipped byte in the component, with the checksum recomputed.
        let mut bundle = sample();
        bundle.component[5] ^= 0x01;
        let err = from_bytes(&to_bytes(&bundle)).unwrap_err();
        assert_eq!(
            err,
            BundleError::ComponentDigestMismatch {
                expected: digest(COMPONENT),
                found: digest(&bundle.component),
            }
        );
        assert!(err.to_string().contains("pinned"), "{err}");

        // The same through the JSON, as a hand edit would do it.
        let mut payload = sample_payload();
        let mut component = BASE64
            .decode(payload["component"].as_str().unwrap())
            .unwrap();
        component.push(0);
        payload["component"] = BASE64.encode(&component).into();
        assert!(matches!(
            from_bytes(&framed_json(&payload)),
            Err(BundleError::ComponentDigestMismatch { .. })
        ));

        // An uppercase digest is a different digest: content addresses are lowercase hex.
        let mut bundle = sample();
        bundle.run.digest = bundle.run.digest.to_uppercase();
        assert!(matches!(
            from_bytes(&to_bytes(&bundle)),
            Err(BundleError::ComponentDigestMismatch { .. })
        ));
    }

    #[test]
    fn payloads_of_the_wrong_shape_are_malformed() {
        let malformed = |bytes: &[u8]| match from_bytes(bytes) {
            Err(BundleError::Malformed(message)) => message,
            other => panic!("expected Malformed, got {other:?}"),
        };

        let message = malformed(&frame(b"{\"run\": "));
        assert!(message.contains("not valid JSON"), "{message}");
        let message = malformed(&frame(b""));
        assert!(message.contains("not valid JSON"), "{message}");

        let mut payload = sample_payload();
        payload.as_object_mut().unwrap().remove("signature");
        let message = malformed(&framed_json(&payload));
        assert!(message.contains("missing field `signature`"), "{message}");

        let mut payload = sample_payload();
        payload["run"]["status"] = "exploded".into();
        let message = malformed(&framed_json(&payload));
        assert!(
            message.contains("not a bundle") && message.contains("exploded"),
            "{message}"
        );

        let mut payload = sample_payload();
        payload["component"] = "not base64!".into();
        let message = malformed(&framed_json(&payload));
        assert!(message.contains("base64"), "{message}");

        let mut deep = br#"{"run": {"input": "#.to_vec();
        deep.extend_from_slice(&[b'['; 10_000]);
        let message = malformed(&frame(&deep));
        assert!(message.contains("recursion"), "{message}");
    }

    #[test]
    fn unknown_payload_fields_are_ignored() {
        let mut payload = sample_payload();
        payload["added_later"] = json!({ "anything": [1, 2, 3] });
        payload["run"]["added_later_too"] = json!(true);
        assert_eq!(from_bytes(&framed_json(&payload)), Ok(sample()));
    }

    /// A small deterministic PRNG, so failures reproduce.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn fill(&mut self, out: &mut [u8]) {
            for b in out {
                *b = self.next() as u8;
            }
        }
    }

    #[test]
    fn every_cut_and_every_flip_is_an_error_and_nothing_panics() {
        let bytes = to_bytes(&sample());
        for cut in 0..bytes.len() {
            assert!(from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            for mask in [0x01, 0x02, 0x20, 0x80, 0xff] {
                let mut corrupt = bytes.clone();
                corrupt[at] ^= mask;
                assert!(
                    from_bytes(&corrupt).is_err(),
                    "byte {at} ^ {mask:#04x} went unnoticed"
                );
            }
        }
        // Random bytes after a valid start, and random splices of the valid file.
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let header = header_len(&bytes);
        for round in 0..2_000 {
            let len = (rng.next() % 300) as usize;
            let mut noise = vec![0u8; len];
            rng.fill(&mut noise);
            let keep = (rng.next() as usize) % (header + 20);
            let mut input = bytes[..keep.min(bytes.len())].to_vec();
            input.extend_from_slice(&noise);
            if round % 2 == 0 {
                // Keep a valid tail too, so the length and JSON parsing see odd inputs.
                input.extend_from_slice(&bytes[header..]);
            }
            let _ = from_bytes(&input);
        }
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.hgbundle");
        let bundle = sample();
        write(&bundle, &path).unwrap();
        assert_eq!(read(&path).unwrap(), bundle);
        assert_eq!(fs::read(&path).unwrap(), to_bytes(&bundle));

        // Overwriting replaces the content, and no temporary file is left behind.
        let mut second = sample();
        second.signature = "func() -> string".into();
        write(&second, &path).unwrap();
        assert_eq!(read(&path).unwrap(), second);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("run.hgbundle")]);
    }

    #[test]
    fn failed_writes_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = sample();

        // A component that is not the pinned one is refused before anything is written.
        let path = dir.path().join("bad.hgbundle");
        let mut bad = sample();
        bad.component.push(1);
        let err = write(&bad, &path).unwrap_err();
        assert!(format!("{err:#}").contains("bad.hgbundle"), "{err:#}");
        assert!(!path.exists());

        // The target is a directory: the rename fails and the temporary file is removed.
        let target = dir.path().join("taken");
        fs::create_dir(&target).unwrap();
        let err = write(&bundle, &target).unwrap_err();
        assert!(format!("{err:#}").contains("taken"), "{err:#}");
        assert!(target.is_dir());

        // The directory does not exist.
        let missing = dir.path().join("no/such/dir/run.hgbundle");
        let err = write(&bundle, &missing).unwrap_err();
        assert!(
            format!("{err:#}").contains("no/such/dir/run.hgbundle"),
            "{err:#}"
        );

        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, vec![std::ffi::OsString::from("taken")]);
        assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    }

    #[test]
    fn read_errors_name_the_path_and_keep_the_cause() {
        let dir = tempfile::tempdir().unwrap();

        let missing = dir.path().join("missing.hgbundle");
        let err = read(&missing).unwrap_err();
        assert!(format!("{err:#}").contains("missing.hgbundle"), "{err:#}");

        let path = dir.path().join("cut.hgbundle");
        let bytes = to_bytes(&sample());
        fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let err = read(&path).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("cut.hgbundle"), "{message}");
        assert!(message.contains("the bundle is truncated"), "{message}");
        assert!(matches!(
            err.downcast_ref::<BundleError>(),
            Some(BundleError::Truncated { .. })
        ));
    }
}
