//! Outbound HTTP: `wasi:http/outgoing-handler` (served by wasmtime-wasi-http), restricted to the
//! deployment's allowlist and journaled.
//!
//! wasmtime-wasi-http implements the `wasi:http` resources; this module supplies its
//! [`WasiHttpHooks::send_request`], the one place a request leaves the guest:
//!
//! - The request's place in the journal is fixed when the guest calls `handle`, so the order of
//!   entries never depends on network timing. The entry is completed when the response (or the
//!   failure) is known: method, URI, headers and body of the request; status, headers and body of
//!   the response, or the error.
//! - When **recording**, a host not on the [`HttpAllowlist`] is refused with `HTTP-request-denied`
//!   and a log line; an allowed request is sent, and its whole response is read (at most
//!   [`MAX_BODY_BYTES`]) before the guest sees any of it.
//! - When **replaying**, nothing is sent: the recorded response or error is returned, and a request
//!   that differs from the recorded one (method, URI, headers or body) is a divergence.
//!
//! In both modes the guest receives the response *as journaled*, never the live object, so what
//! it saw and what replay gives it are identical by construction.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use super::log::LogSink;
pub use hypergraph_core::http::{HttpAllowlist, HttpFailure, HttpOutcome, HttpRequest};

use crate::journal::{Blob, Entry, HttpCall, HttpEntry, Journal};

/// The interfaces this module serves.
pub const INTERFACES: &[&str] = &[
    "wasi:http/outgoing-handler@0.2.12",
    "wasi:http/types@0.2.12",
];

/// Largest request or response body accepted; a larger one fails the request.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The journaled form of a request failure.
fn failure_of(error: &HttpError) -> HttpFailure {
    match error {
        HttpError::Hyper(_) | HttpError::HttpProtocolError => HttpFailure::ProtocolError,
        HttpError::Connect(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            HttpFailure::ConnectionTimeout
        }
        HttpError::Connect(e) if e.to_string().contains("lookup") => {
            HttpFailure::DnsError(e.to_string())
        }
        HttpError::Connect(_) | HttpError::ConnectionRefused => HttpFailure::ConnectionRefused,
        HttpError::ConnectionTimeout => HttpFailure::ConnectionTimeout,
        HttpError::Tls(_) | HttpError::TlsProtocolError => HttpFailure::TlsError,
        HttpError::InvalidDnsNameError(e) => HttpFailure::DnsError(e.to_string()),
        HttpError::DnsError { .. } | HttpError::DnsTimeout => {
            HttpFailure::DnsError(error.to_string())
        }
        HttpError::HttpRequestUriInvalid => HttpFailure::InvalidUri,
        HttpError::HttpRequestBodySize(_) => HttpFailure::RequestBodyTooLarge,
        HttpError::HttpResponseBodySize(_) => HttpFailure::ResponseBodyTooLarge,
        HttpError::HttpResponseTimeout
        | HttpError::ConnectionReadTimeout
        | HttpError::ConnectionWriteTimeout => HttpFailure::Timeout,
        HttpError::HttpRequestDenied => HttpFailure::Denied,
        other => HttpFailure::Internal(other.to_string()),
    }
}

/// The `wasi:http` error code a journaled failure stands for.
fn error_of(failure: &HttpFailure) -> HttpError {
    match failure {
        HttpFailure::Denied => HttpError::HttpRequestDenied,
        HttpFailure::ConnectionRefused => HttpError::ConnectionRefused,
        HttpFailure::ConnectionTimeout => HttpError::ConnectionTimeout,
        HttpFailure::DnsError(detail) => HttpError::DnsError {
            rcode: Some(detail.clone()),
            info_code: None,
        },
        HttpFailure::TlsError => HttpError::TlsProtocolError,
        HttpFailure::ProtocolError => HttpError::HttpProtocolError,
        HttpFailure::InvalidUri => HttpError::HttpRequestUriInvalid,
        HttpFailure::RequestBodyTooLarge => {
            HttpError::HttpRequestBodySize(Some(MAX_BODY_BYTES as u64))
        }
        HttpFailure::ResponseBodyTooLarge => {
            HttpError::HttpResponseBodySize(Some(MAX_BODY_BYTES as u64))
        }
        HttpFailure::Timeout => HttpError::HttpResponseTimeout,
        HttpFailure::Abandoned => {
            HttpError::InternalError(Some("the attempt ended before the response".into()))
        }
        HttpFailure::Internal(detail) => HttpError::InternalError(Some(detail.clone())),
    }
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The per-instance state of this capability: the deployment's allowlist until the guest's first
/// HTTP call, then the wasmtime-wasi-http context and the hooks that send (or refuse, or replay)
/// its requests.
pub struct HttpState {
    allow: HttpAllowlist,
    built: Option<(WasiHttpCtx, Hooks)>,
}

impl HttpState {
    /// State for one attempt whose requests may go to hosts on `allow`; nothing is built yet.
    pub fn new(allow: HttpAllowlist) -> HttpState {
        HttpState { allow, built: None }
    }

    /// wasmtime-wasi-http's view over `table` (shared with WASI's resources), built on first use:
    /// exchanges are journaled in `journal`, refusals logged to `logs`, and no request outlives
    /// `deadline`.
    pub fn view<'a>(
        &'a mut self,
        table: &'a mut ResourceTable,
        journal: &Journal,
        logs: &LogSink,
        deadline: Instant,
    ) -> WasiHttpCtxView<'a> {
        let allow = &mut self.allow;
        let (ctx, hooks) = self.built.get_or_insert_with(|| {
            let hooks = Hooks {
                allow: std::mem::take(allow),
                journal: journal.clone(),
                logs: logs.clone(),
                deadline,
            };
            (WasiHttpCtx::new(), hooks)
        });
        WasiHttpCtxView { ctx, table, hooks }
    }
}

struct Hooks {
    allow: HttpAllowlist,
    journal: Journal,
    logs: LogSink,
    deadline: Instant,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _io: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let (parts, body) = request.into_parts();
        let head = HttpRequest {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: header_pairs(&parts.headers),
            body: None,
        };
        let call = HttpCall::Request {
            method: head.method.clone(),
            uri: head.uri.clone(),
            headers: head.headers.clone(),
        };
        let placeholder = HttpEntry::Request {
            request: head.clone(),
            outcome: HttpOutcome::Failed {
                error: HttpFailure::Abandoned,
            },
        };
        let Some(deferred) = self.journal.defer(call, placeholder) else {
            // The replay diverged earlier or here; the guest gets an error, nothing is sent.
            return Box::new(async {
                Err(HttpError::InternalError(Some(
                    "replay diverged from the journal".into(),
                )))
            });
        };
        // Replaying: the recorded outcome. Recording: a refusal is decided now; anything else
        // is decided by the network.
        let decided = match deferred.recorded() {
            Some(Entry::Http(HttpEntry::Request { outcome, .. })) => Some(outcome.clone()),
            Some(_) => unreachable!("journal answered an HTTP call with another kind"),
            None if !self.allow.allows(&parts.uri) => Some(HttpOutcome::Failed {
                error: HttpFailure::Denied,
            }),
            None => None,
        };
        if let Some(HttpOutcome::Failed {
            error: HttpFailure::Denied,
        }) = &decided
        {
            let host = parts.uri.authority().map(|a| a.as_str()).unwrap_or("");
            let message = format!(
                "HTTP {} {} denied: `{host}` is not on this deployment's allowlist \
                 (allow it with `hypergraph deploy --allow-http {host}`)",
                head.method, head.uri
            );
            tracing::warn!(target: "hypergraph::http", "{message}");
            self.logs.line("hypergraph", "warn", &message);
        }
        let deadline = self.deadline;
        Box::new(async move {
            let body = Limited::new(body, MAX_BODY_BYTES).collect().await;
            let (body, outcome) = match body {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    let outcome = match decided {
                        Some(outcome) => outcome,
                        None => send_live(parts, bytes.clone(), options, deadline).await,
                    };
                    (Some(Blob::from_bytes(&bytes)), outcome)
                }
                Err(_) => (
                    None,
                    HttpOutcome::Failed {
                        error: HttpFailure::RequestBodyTooLarge,
                    },
                ),
            };
            let request = HttpRequest { body, ..head };
            deferred.complete(HttpEntry::Request {
                request,
                outcome: outcome.clone(),
            });
            match outcome {
                HttpOutcome::Response {
                    status,
                    headers,
                    body,
                } => {
                    let mut response = Response::builder().status(status);
                    for (name, value) in &headers {
                        response = response.header(name, value);
                    }
                    let body = Full::new(Bytes::from(body.to_vec()))
                        .map_err(|never| match never {})
                        .boxed_unsync();
                    let response = response
                        .body(body)
                        .map_err(|e| HttpError::InternalError(Some(e.to_string())))?;
                    let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                        Box::new(async { Ok(()) });
                    Ok((response, io))
                }
                HttpOutcome::Failed { error } => Err(error_of(&error)),
            }
        })
    }
}

/// Sends the request and reads the whole response, before `deadline`.
async fn send_live(
    parts: http::request::Parts,
    body: Bytes,
    options: Option<RequestOptions>,
    deadline: Instant,
) -> HttpOutcome {
    let request = Request::from_parts(parts, Full::new(body).map_err(|never| match never {}));
    let exchange = async {
        let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
        let connection = tokio::spawn(io);
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY_BYTES).collect().await;
        connection.abort();
        let body = body
            .map_err(|_| HttpError::HttpResponseBodySize(Some(MAX_BODY_BYTES as u64)))?
            .to_bytes();
        Ok::<_, HttpError>(HttpOutcome::Response {
            status: parts.status.as_u16(),
            headers: header_pairs(&parts.headers),
            body: Blob::from_bytes(&body),
        })
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(remaining.max(Duration::from_millis(1)), exchange).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => HttpOutcome::Failed {
            error: failure_of(&error),
        },
        Err(_) => HttpOutcome::Failed {
            error: HttpFailure::Timeout,
        },
    }
}

/// Registers `wasi:http/types` and `wasi:http/outgoing-handler`, served from the store data's
/// [`WasiHttpView`] (whose context [`HttpState::view`] builds).
pub fn add_to_linker<T: WasiHttpView + 'static>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> HttpAllowlist {
        HttpAllowlist::new(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    }

    fn uri(text: &str) -> http::Uri {
        text.parse().unwrap()
    }

    #[test]
    fn allowlist_matches_host_port_and_wildcards() {
        let list = allow(&["127.0.0.1:8080", "API.example.com", "*.internal.net"]);
        assert!(list.allows(&uri("http://127.0.0.1:8080/x")));
        assert!(!list.allows(&uri("http://127.0.0.1:8081/x")));
        assert!(list.allows(&uri("https://api.example.com/v1")));
        assert!(list.allows(&uri("http://api.example.com:9000/")));
        assert!(!list.allows(&uri("https://example.com/")));
        assert!(list.allows(&uri("https://db.internal.net/")));
        assert!(!list.allows(&uri("https://internal.net/")));
        assert!(!list.allows(&uri("https://evilinternal.net/")));
        assert!(!HttpAllowlist::default().allows(&uri("http://127.0.0.1/")));
        let https = allow(&["secure.example:443"]);
        assert!(https.allows(&uri("https://secure.example/")));
        assert!(!https.allows(&uri("http://secure.example/")));
    }

    #[test]
    fn allowlist_entries_are_validated() {
        for ok in ["localhost", "127.0.0.1:80", "*.example.com", "[::1]:8080"] {
            HttpAllowlist::validate_entry(ok).unwrap();
        }
        for bad in ["http://x.com", "x.com/path", "", "x.com:99999", "a b"] {
            assert!(HttpAllowlist::validate_entry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_keep_their_bytes() {
        for bytes in [&b"hello"[..], &[0xff, 0x00, 0x80][..], &[][..]] {
            let body = Blob::from_bytes(bytes);
            assert_eq!(&body.to_vec()[..], bytes);
        }
        assert!(matches!(Blob::from_bytes(b"text"), Blob::Utf8(_)));
    }

    #[test]
    fn failures_serialize_with_their_code() {
        let json = serde_json::to_value(HttpFailure::Denied).unwrap();
        assert_eq!(json, serde_json::json!({"code": "denied"}));
        let json = serde_json::to_value(HttpFailure::DnsError("nx".into())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "dns-error", "detail": "nx"})
        );
    }
}
