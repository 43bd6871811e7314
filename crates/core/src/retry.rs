//! Retry policies: which failed attempts are tried again, how often, and after what delay.
//!
//! A [`RetryPolicy`] has only optional fields so that policies can be layered: host defaults <
//! deployment < DAG workflow < DAG step, each layer applied with [`RetryPolicy::overlay`]. The
//! accessors ([`RetryPolicy::max_attempts`], [`RetryPolicy::backoff`], ...) resolve a missing field
//! to its default, so the resolved policy of a layer stack is `defaults.overlay(a).overlay(b)...`.
//!
//! Classification is by [`ErrorKind`] only (plus the payload of application errors for
//! [`RetryOn::Retryable`]); see [`RetryOn`] for the rules and for the kinds that never retry.

use std::time::Duration;

use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorKind, TaskError};

/// Attempts when a policy does not say: one, i.e. no retries.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 1;
/// The largest accepted `max_attempts`.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// Delay before the first retry when a policy does not say.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// Cap of the retry delay when a policy does not say.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The largest accepted `max_backoff`: one day.
pub const MAX_BACKOFF_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);
/// Which failures retry when a policy does not say: traps (and `exit`), timeouts, and application
/// errors that mark themselves retryable.
pub const DEFAULT_RETRY_ON: &[RetryOn] = &[RetryOn::Trap, RetryOn::Timeout, RetryOn::Retryable];

/// A class of failures that a policy may retry.
///
/// Errors of kind [`ErrorKind::MemoryLimit`], [`ErrorKind::StackOverflow`], [`ErrorKind::Limit`],
/// [`ErrorKind::KvConflict`] and [`ErrorKind::Host`] match no class and are never retried: the
/// first three are deterministic limits that a fresh instance fed the same input hits again, a
/// key-value conflict was already re-executed as often as the host allows, and a host error means the task could not be run at all
/// (instantiation or input conversion failed), which another attempt does not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The guest trapped ([`ErrorKind::Trap`]) or called `exit` ([`ErrorKind::Exit`]).
    Trap,
    /// The attempt ran past its execution deadline ([`ErrorKind::Timeout`]).
    Timeout,
    /// An application error whose payload marks itself retryable: an object with a `retryable`
    /// key whose value is neither `false` nor `null` (a record field `retryable: true`, or a
    /// variant case `retryable(payload)`, which converts to `{"retryable": payload}`), or exactly
    /// the string `"retryable"` (an enum case, or a variant case without payload).
    Retryable,
    /// Every application error ([`ErrorKind::Application`]), whatever its payload.
    Application,
}

impl RetryOn {
    /// Whether `error` belongs to this class (see the variants for the rules).
    pub fn matches(self, error: &TaskError) -> bool {
        match self {
            RetryOn::Trap => matches!(error.kind, ErrorKind::Trap | ErrorKind::Exit),
            RetryOn::Timeout => error.kind == ErrorKind::Timeout,
            RetryOn::Application => error.kind == ErrorKind::Application,
            RetryOn::Retryable => {
                error.kind == ErrorKind::Application
                    && error.value.as_ref().is_some_and(marks_retryable)
            }
        }
    }
}

/// Whether an application error payload marks itself retryable (see [`RetryOn::Retryable`]).
fn marks_retryable(value: &Value) -> bool {
    match value {
        Value::String(case) => case == "retryable",
        Value::Object(fields) => fields
            .get("retryable")
            .is_some_and(|flag| !matches!(flag, Value::Null | Value::Bool(false))),
        _ => false,
    }
}

/// A retry policy; every field is optional so policies can be layered (host defaults <
/// deployment < DAG workflow < DAG step) with [`RetryPolicy::overlay`].
///
/// In TOML and JSON the durations are humantime strings such as `"250ms"`, `"2s"` or `"1m"`, and
/// unknown fields are rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RetryPolicy {
    /// Total attempts including the first (default 1: no retries). 1..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Delay before the first retry (default 1s); doubles per retry.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_serde"
    )]
    pub backoff: Option<Duration>,
    /// Cap of the delay (default 60s, at most 24h).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_serde"
    )]
    pub max_backoff: Option<Duration>,
    /// Which failures retry (default `[trap, timeout, retryable]`); must not be empty when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<RetryOn>>,
}

impl RetryPolicy {
    /// This policy with every field that `over` sets replaced by `over`'s value; fields `over`
    /// leaves unset keep this policy's value.
    pub fn overlay(&self, over: &RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            max_attempts: over.max_attempts.or(self.max_attempts),
            backoff: over.backoff.or(self.backoff),
            max_backoff: over.max_backoff.or(self.max_backoff),
            retry_on: over.retry_on.clone().or_else(|| self.retry_on.clone()),
        }
    }

    /// Total attempts including the first, [`DEFAULT_MAX_ATTEMPTS`] when unset.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }

    /// Delay before the first retry, [`DEFAULT_BACKOFF`] when unset.
    pub fn backoff(&self) -> Duration {
        self.backoff.unwrap_or(DEFAULT_BACKOFF)
    }

    /// Cap of the retry delay, [`DEFAULT_MAX_BACKOFF`] when unset.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff.unwrap_or(DEFAULT_MAX_BACKOFF)
    }

    /// The classes of failures that retry, [`DEFAULT_RETRY_ON`] when unset.
    pub fn retry_on(&self) -> &[RetryOn] {
        self.retry_on.as_deref().unwrap_or(DEFAULT_RETRY_ON)
    }

    /// Checks the policy as it resolves (unset fields take their defaults): `max_attempts` in
    /// 1..=100, `backoff` greater than zero and not longer than `max_backoff`, `max_backoff` at
    /// most 24h, and `retry_on` not empty when given. On failure, the message lists every problem,
    /// separated by `; `, naming the fields as they are written in a policy file.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Some(attempts) = self.max_attempts {
            if !(1..=MAX_ATTEMPTS_LIMIT).contains(&attempts) {
                problems.push(format!(
                    "max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, not {attempts}"
                ));
            }
        }
        if self.backoff().is_zero() {
            problems.push("backoff must be greater than zero".to_string());
        }
        if self.max_backoff() > MAX_BACKOFF_LIMIT {
            problems.push(format!(
                "max_backoff must be at most {}, not {}",
                humantime::format_duration(MAX_BACKOFF_LIMIT),
                humantime::format_duration(self.max_backoff())
            ));
        }
        if self.backoff() > self.max_backoff() {
            let default = |set: bool| if set { "" } else { " (the default)" };
            problems.push(format!(
                "backoff {}{} is longer than max_backoff {}{}: lower backoff or raise max_backoff",
                humantime::format_duration(self.backoff()),
                default(self.backoff.is_some()),
                humantime::format_duration(self.max_backoff()),
                default(self.max_backoff.is_some()),
            ));
        }
        if self.retry_on.as_ref().is_some_and(Vec::is_empty) {
            problems.push(
                "retry_on must list at least one of trap, timeout, retryable, application \
                 (to disable retries, set max_attempts = 1)"
                    .to_string(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Whether the policy's `retry_on` classes cover `error`, regardless of attempts left.
    pub fn retries(&self, error: &TaskError) -> bool {
        self.retry_on().iter().any(|class| class.matches(error))
    }

    /// Whether to make another attempt after attempt number `attempt` (1-based) failed with
    /// `error`: the error is retried by this policy and `attempt < max_attempts`.
    pub fn should_retry(&self, error: &TaskError, attempt: u32) -> bool {
        attempt < self.max_attempts() && self.retries(error)
    }

    /// The delay before attempt `attempt + 1`, after attempt `attempt` (1-based; 0 counts as 1)
    /// failed.
    ///
    /// The base delay is `backoff * 2^(attempt - 1)`, capped at `max_backoff` (saturating, so a
    /// large `attempt` yields the cap); the result is drawn uniformly from `[base / 2, base]`
    /// ("equal jitter"), so retries of many runs that failed together spread out while every delay
    /// stays at least half the nominal one.
    pub fn delay(&self, attempt: u32, rng: &mut impl rand::Rng) -> Duration {
        let doublings = attempt.saturating_sub(1);
        let base = 2u32
            .checked_pow(doublings)
            .and_then(|factor| self.backoff().checked_mul(factor))
            .unwrap_or(Duration::MAX)
            .min(self.max_backoff());
        let base_nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(base_nanos / 2..=base_nanos))
    }
}

/// Serde helper for `Option<Duration>` fields written as humantime strings (`"250ms"`, `"2s"`,
/// `"1m 30s"`): use with `#[serde(default, skip_serializing_if = "Option::is_none", with =
/// "crate::retry::duration_serde")]`.
///
/// Serializing writes `None` as a unit (null) and `Some` as humantime's canonical form, which
/// deserializes back to the same value. Deserializing accepts a string, or a null/none as `None`;
/// anything else (for example a bare number, whose unit would be a guess) is an error that shows
/// the expected form.
pub mod duration_serde {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;

    /// Writes `value` as a humantime string, or as none when it is `None`.
    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.collect_str(&humantime::format_duration(*duration)),
            None => serializer.serialize_none(),
        }
    }

    /// Reads a humantime string (or none/null as `None`).
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserializer.deserialize_option(DurationVisitor)
    }

    struct DurationVisitor;

    impl<'de> Visitor<'de> for DurationVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration string such as \"250ms\", \"2s\" or \"1m\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            humantime::parse_duration(text).map(Some).map_err(|error| {
                E::custom(format!(
                    "invalid duration `{text}`: {error}; write e.g. \"250ms\", \"2s\" or \"1m\""
                ))
            })
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_str(DurationVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::json;

    use super::*;

    fn error(kind: ErrorKind, value: Option<Value>) -> TaskError {
        TaskError {
            kind,
            message: "failed".to_string(),
            backtrace: None,
            value,
        }
    }

    fn app(value: Value) -> TaskError {
        error(ErrorKind::Application, Some(value))
    }

    fn only(class: RetryOn) -> RetryPolicy {
        RetryPolicy {
            max_attempts: Some(3),
            retry_on: Some(vec![class]),
            ..RetryPolicy::default()
        }
    }

    const ALL_KINDS: [ErrorKind; 9] = [
        ErrorKind::Application,
        ErrorKind::Trap,
        ErrorKind::Timeout,
        ErrorKind::MemoryLimit,
        ErrorKind::StackOverflow,
        ErrorKind::Exit,
        ErrorKind::Host,
        ErrorKind::Limit,
        ErrorKind::KvConflict,
    ];

    #[test]
    fn trap_class_covers_trap_and_exit_only() {
        for kind in ALL_KINDS {
            let expected = matches!(kind, ErrorKind::Trap | ErrorKind::Exit);
            assert_eq!(
                RetryOn::Trap.matches(&error(kind, None)),
                expected,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn timeout_class_covers_timeout_only() {
        for kind in ALL_KINDS {
            let expected = kind == ErrorKind::Timeout;
            assert_eq!(
                RetryOn::Timeout.matches(&error(kind, None)),
                expected,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn application_class_covers_every_application_error() {
        assert!(RetryOn::Application.matches(&error(ErrorKind::Application, None)));
        assert!(RetryOn::Application.matches(&app(json!("not-found"))));
        assert!(RetryOn::Application.matches(&app(json!({"retryable": false}))));
        for kind in ALL_KINDS
            .into_iter()
            .filter(|k| *k != ErrorKind::Application)
        {
            assert!(
                !RetryOn::Application.matches(&error(kind, None)),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn retryable_class_follows_the_payload() {
        let yes = [
            json!({"retryable": true}),
            json!({"retryable": {"after-ms": 20}}),
            json!({"retryable": "rate limited"}),
            json!({"retryable": 0}),
            json!({"retryable": true, "message": "busy"}),
            json!("retryable"),
        ];
        for value in yes {
            assert!(RetryOn::Retryable.matches(&app(value.clone())), "{value}");
        }
        let no = [
            json!({"retryable": false}),
            json!({"retryable": null}),
            json!({"other": true}),
            json!("fatal"),
            json!("Retryable"),
            json!(["retryable"]),
            json!(true),
            json!(null),
        ];
        for value in no {
            assert!(!RetryOn::Retryable.matches(&app(value.clone())), "{value}");
        }
        assert!(!RetryOn::Retryable.matches(&error(ErrorKind::Application, None)));
        // The payload only counts for application errors.
        assert!(!RetryOn::Retryable.matches(&error(ErrorKind::Host, Some(json!("retryable")))));
    }

    #[test]
    fn limits_and_host_errors_never_retry() {
        let everything = RetryPolicy {
            max_attempts: Some(10),
            retry_on: Some(vec![
                RetryOn::Trap,
                RetryOn::Timeout,
                RetryOn::Retryable,
                RetryOn::Application,
            ]),
            ..RetryPolicy::default()
        };
        for kind in [
            ErrorKind::MemoryLimit,
            ErrorKind::StackOverflow,
            ErrorKind::Host,
            ErrorKind::Limit,
            ErrorKind::KvConflict,
        ] {
            assert!(
                !everything.retries(&error(kind, Some(json!("retryable")))),
                "{kind:?}"
            );
            assert!(!everything.should_retry(&error(kind, None), 1), "{kind:?}");
        }
    }

    #[test]
    fn retries_uses_only_the_listed_classes() {
        let trap = error(ErrorKind::Trap, None);
        let timeout = error(ErrorKind::Timeout, None);
        let plain = app(json!("bad input"));
        let marked = app(json!({"retryable": true}));
        assert!(only(RetryOn::Trap).retries(&trap));
        assert!(!only(RetryOn::Trap).retries(&timeout));
        assert!(only(RetryOn::Timeout).retries(&timeout));
        assert!(!only(RetryOn::Timeout).retries(&marked));
        assert!(only(RetryOn::Retryable).retries(&marked));
        assert!(!only(RetryOn::Retryable).retries(&plain));
        assert!(only(RetryOn::Application).retries(&plain));
        assert!(!only(RetryOn::Application).retries(&trap));
    }

    #[test]
    fn defaults() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 1);
        assert_eq!(policy.backoff(), Duration::from_secs(1));
        assert_eq!(policy.max_backoff(), Duration::from_secs(60));
        assert_eq!(
            policy.retry_on(),
            &[RetryOn::Trap, RetryOn::Timeout, RetryOn::Retryable]
        );
        assert_eq!(policy.validate(), Ok(()));
        // Default classes, but a single attempt: nothing is retried.
        assert!(policy.retries(&error(ErrorKind::Trap, None)));
        assert!(!policy.should_retry(&error(ErrorKind::Trap, None), 1));
        // Default classes: plain application errors do not retry, marked ones do.
        assert!(!policy.retries(&app(json!("nope"))));
        assert!(policy.retries(&app(json!("retryable"))));
    }

    #[test]
    fn should_retry_stops_at_max_attempts() {
        let policy = RetryPolicy {
            max_attempts: Some(3),
            ..RetryPolicy::default()
        };
        let trap = error(ErrorKind::Trap, None);
        assert!(policy.should_retry(&trap, 1));
        assert!(policy.should_retry(&trap, 2));
        assert!(!policy.should_retry(&trap, 3));
        assert!(!policy.should_retry(&trap, 4));
        assert!(!policy.should_retry(&app(json!("fatal")), 1));
    }

    #[test]
    fn overlay_takes_set_fields_of_the_upper_layer() {
        let host = RetryPolicy {
            max_attempts: Some(2),
            backoff: Some(Duration::from_millis(500)),
            max_backoff: None,
            retry_on: Some(vec![RetryOn::Trap]),
        };
        let step = RetryPolicy {
            max_attempts: Some(5),
            max_backoff: Some(Duration::from_secs(10)),
            ..RetryPolicy::default()
        };
        assert_eq!(
            host.overlay(&step),
            RetryPolicy {
                max_attempts: Some(5),
                backoff: Some(Duration::from_millis(500)),
                max_backoff: Some(Duration::from_secs(10)),
                retry_on: Some(vec![RetryOn::Trap]),
            }
        );
        assert_eq!(host.overlay(&RetryPolicy::default()), host);
        assert_eq!(RetryPolicy::default().overlay(&host), host);
        let over_retry_on = RetryPolicy {
            retry_on: Some(vec![RetryOn::Application]),
            ..RetryPolicy::default()
        };
        assert_eq!(
            host.overlay(&over_retry_on).retry_on(),
            &[RetryOn::Application]
        );
    }

    #[test]
    fn validate_max_attempts_range() {
        for attempts in [1, 2, 100] {
            let policy = RetryPolicy {
                max_attempts: Some(attempts),
                ..RetryPolicy::default()
            };
            assert_eq!(policy.validate(), Ok(()), "{attempts}");
        }
        for attempts in [0, 101] {
            let policy = RetryPolicy {
                max_attempts: Some(attempts),
                ..RetryPolicy::default()
            };
            assert_eq!(
                policy.validate(),
                Err(format!(
                    "max_attempts must be between 1 and 100, not {attempts}"
                ))
            );
        }
    }

    #[test]
    fn validate_zero_backoff() {
        let policy = RetryPolicy {
            backoff: Some(Duration::ZERO),
            ..RetryPolicy::default()
        };
        assert_eq!(
            policy.validate(),
            Err("backoff must be greater than zero".to_string())
        );
    }

    #[test]
    fn validate_backoff_longer_than_cap() {
        let explicit = RetryPolicy {
            backoff: Some(Duration::from_secs(10)),
            max_backoff: Some(Duration::from_secs(5)),
            ..RetryPolicy::default()
        };
        assert_eq!(
            explicit.validate(),
            Err(
                "backoff 10s is longer than max_backoff 5s: lower backoff or raise max_backoff"
                    .to_string()
            )
        );
        let against_default_cap = RetryPolicy {
            backoff: Some(Duration::from_secs(120)),
            ..RetryPolicy::default()
        };
        assert_eq!(
            against_default_cap.validate(),
            Err("backoff 2m is longer than max_backoff 1m (the default): \
                 lower backoff or raise max_backoff"
                .to_string())
        );
        let against_default_backoff = RetryPolicy {
            max_backoff: Some(Duration::from_millis(500)),
            ..RetryPolicy::default()
        };
        assert_eq!(
            against_default_backoff.validate(),
            Err(
                "backoff 1s (the default) is longer than max_backoff 500ms: \
                 lower backoff or raise max_backoff"
                    .to_string()
            )
        );
        let equal = RetryPolicy {
            backoff: Some(Duration::from_secs(5)),
            max_backoff: Some(Duration::from_secs(5)),
            ..RetryPolicy::default()
        };
        assert_eq!(equal.validate(), Ok(()));
    }

    #[test]
    fn validate_max_backoff_limit() {
        let day = RetryPolicy {
            max_backoff: Some(Duration::from_secs(24 * 3600)),
            ..RetryPolicy::default()
        };
        assert_eq!(day.validate(), Ok(()));
        let longer = RetryPolicy {
            max_backoff: Some(Duration::from_secs(24 * 3600 + 1)),
            ..RetryPolicy::default()
        };
        assert_eq!(
            longer.validate(),
            Err("max_backoff must be at most 1day, not 1day 1s".to_string())
        );
    }

    #[test]
    fn validate_empty_retry_on() {
        let policy = RetryPolicy {
            retry_on: Some(vec![]),
            ..RetryPolicy::default()
        };
        assert_eq!(
            policy.validate(),
            Err(
                "retry_on must list at least one of trap, timeout, retryable, application \
                 (to disable retries, set max_attempts = 1)"
                    .to_string()
            )
        );
    }

    #[test]
    fn validate_reports_every_problem() {
        let policy = RetryPolicy {
            max_attempts: Some(0),
            backoff: Some(Duration::ZERO),
            max_backoff: None,
            retry_on: Some(vec![]),
        };
        assert_eq!(
            policy.validate(),
            Err("max_attempts must be between 1 and 100, not 0; \
                 backoff must be greater than zero; \
                 retry_on must list at least one of trap, timeout, retryable, application \
                 (to disable retries, set max_attempts = 1)"
                .to_string())
        );
    }

    fn delays(policy: &RetryPolicy, attempt: u32, samples: usize) -> Vec<Duration> {
        let mut rng = StdRng::seed_from_u64(7);
        (0..samples)
            .map(|_| policy.delay(attempt, &mut rng))
            .collect()
    }

    #[test]
    fn delay_is_within_equal_jitter_bounds_and_doubles() {
        let policy = RetryPolicy {
            backoff: Some(Duration::from_millis(100)),
            max_backoff: Some(Duration::from_secs(60)),
            ..RetryPolicy::default()
        };
        for attempt in 1..=8u32 {
            let base = Duration::from_millis(100) * 2u32.pow(attempt - 1);
            let samples = delays(&policy, attempt, 200);
            for delay in &samples {
                assert!(*delay >= base / 2 && *delay <= base, "{attempt}: {delay:?}");
            }
            // Jitter actually spreads the delays over the range.
            let min = samples.iter().min().unwrap();
            let max = samples.iter().max().unwrap();
            assert!(
                *min < base * 6 / 10 && *max > base * 9 / 10,
                "{attempt}: {min:?}..{max:?}"
            );
        }
    }

    #[test]
    fn delay_is_capped_and_never_overflows() {
        let policy = RetryPolicy {
            backoff: Some(Duration::from_secs(1)),
            max_backoff: Some(Duration::from_secs(10)),
            ..RetryPolicy::default()
        };
        for attempt in [5, 6, 31, 32, 33, 64, 1000, u32::MAX] {
            for delay in delays(&policy, attempt, 50) {
                assert!(
                    delay >= Duration::from_secs(5) && delay <= Duration::from_secs(10),
                    "{attempt}: {delay:?}"
                );
            }
        }
        let unbounded = RetryPolicy {
            backoff: Some(Duration::from_secs(u64::MAX / 4)),
            max_backoff: Some(Duration::MAX),
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert!(unbounded.delay(u32::MAX, &mut rng) >= Duration::from_nanos(u64::MAX / 2));
    }

    #[test]
    fn delay_of_attempt_zero_is_the_first_delay() {
        let policy = RetryPolicy::default();
        for delay in delays(&policy, 0, 50) {
            assert!(delay >= Duration::from_millis(500) && delay <= Duration::from_secs(1));
        }
    }

    #[test]
    fn delay_is_deterministic_for_a_seed() {
        let policy = RetryPolicy::default();
        assert_eq!(delays(&policy, 3, 10), delays(&policy, 3, 10));
    }

    #[test]
    fn serde_round_trip() {
        let policy = RetryPolicy {
            max_attempts: Some(4),
            backoff: Some(Duration::from_millis(250)),
            max_backoff: Some(Duration::from_secs(90)),
            retry_on: Some(vec![RetryOn::Timeout, RetryOn::Retryable]),
        };
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(
            json,
            json!({
                "max_attempts": 4,
                "backoff": "250ms",
                "max_backoff": "1m 30s",
                "retry_on": ["timeout", "retryable"],
            })
        );
        assert_eq!(serde_json::from_value::<RetryPolicy>(json).unwrap(), policy);
        let text = toml::to_string(&policy).unwrap();
        assert_eq!(toml::from_str::<RetryPolicy>(&text).unwrap(), policy);
        assert_eq!(
            serde_json::to_value(RetryPolicy::default()).unwrap(),
            json!({})
        );
        assert_eq!(
            serde_json::from_value::<RetryPolicy>(json!({})).unwrap(),
            RetryPolicy::default()
        );
    }

    #[test]
    fn serde_reads_humantime_strings() {
        let policy: RetryPolicy =
            toml::from_str("backoff = \"2s\"\nmax_backoff = \"1m\"\nretry_on = [\"application\"]")
                .unwrap();
        assert_eq!(policy.backoff, Some(Duration::from_secs(2)));
        assert_eq!(policy.max_backoff, Some(Duration::from_secs(60)));
        assert_eq!(policy.retry_on(), &[RetryOn::Application]);
        let nulls: RetryPolicy =
            serde_json::from_value(json!({"backoff": null, "max_backoff": null})).unwrap();
        assert_eq!(nulls, RetryPolicy::default());
    }

    #[test]
    fn serde_rejects_unknown_fields() {
        let error = serde_json::from_value::<RetryPolicy>(json!({"retries": 3})).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `retries`"),
            "{error}"
        );
        let error = toml::from_str::<RetryPolicy>("max_attempt = 3").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `max_attempt`"),
            "{error}"
        );
    }

    #[test]
    fn serde_rejects_bad_durations() {
        let error = toml::from_str::<RetryPolicy>("backoff = \"2 parsecs\"").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("invalid duration `2 parsecs`"),
            "{message}"
        );
        assert!(
            message.contains("write e.g. \"250ms\", \"2s\" or \"1m\""),
            "{message}"
        );
        assert!(message.contains("line 1"), "{message}");
        let error = serde_json::from_value::<RetryPolicy>(json!({"backoff": 5})).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("expected a duration string such as \"250ms\", \"2s\" or \"1m\""),
            "{error}"
        );
        let error =
            serde_json::from_value::<RetryPolicy>(json!({"retry_on": ["oom"]})).unwrap_err();
        assert!(
            error.to_string().contains("unknown variant `oom`"),
            "{error}"
        );
    }
}
