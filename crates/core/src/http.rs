//! Outbound HTTP as Hypergraph records and grants it: the journaled form of a request and its
//! outcome, and the allowlist a deployment grants. The capability that serves `wasi:http` lives in
//! `hypergraph-capabilities`; these types are plain data.

use serde::{Deserialize, Serialize};

use crate::journal::Blob;

/// Hosts a deployment may send HTTP requests to. Each entry is a host name or IP address, an
/// optional `:port`, or `*.domain` for any subdomain of `domain`. Matching ignores case; an entry
/// without a port allows every port. Empty (the default) allows nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpAllowlist {
    entries: Vec<String>,
}

impl HttpAllowlist {
    /// The allowlist of `entries`, each checked with [`HttpAllowlist::validate_entry`].
    pub fn new(entries: &[String]) -> HttpAllowlist {
        HttpAllowlist {
            entries: entries.iter().map(|e| e.to_ascii_lowercase()).collect(),
        }
    }

    /// Checks one allowlist entry before it is stored.
    pub fn validate_entry(entry: &str) -> Result<(), String> {
        let (host, port) = split_port(entry);
        let host = host.strip_prefix("*.").unwrap_or(host);
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
        if !valid_host || entry.contains('/') {
            return Err(format!(
                "`{entry}` is not a valid HTTP allowlist entry: give a host name or IP address, \
                 optionally with `:port`, or `*.domain` (no scheme, no path)"
            ));
        }
        if let Some(port) = port {
            port.parse::<u16>()
                .map_err(|_| format!("`{entry}` has an invalid port `{port}`"))?;
        }
        Ok(())
    }

    /// True when a request to `uri` may be sent.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        self.entries.iter().any(|entry| {
            let (pattern, entry_port) = split_port(entry);
            let port_ok = entry_port.is_none_or(|p| p.parse() == Ok(port));
            let host_ok = match pattern.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => pattern == host,
            };
            host_ok && port_ok
        })
    }
}

/// Splits `host:port`, leaving bracketed IPv6 literals and bare IPv6 addresses whole.
fn split_port(entry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((_, tail)) => {
                let host = &entry[..entry.len() - tail.len()];
                (host, tail.strip_prefix(':'))
            }
            None => (entry, None),
        };
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (entry, None),
    }
}

/// An outgoing request as journaled. `body` is absent only when the attempt ended before the
/// guest finished writing it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Blob>,
}

/// What came back for a request, as journaled and as the guest sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpOutcome {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Blob,
    },
    Failed {
        error: HttpFailure,
    },
}

/// Why a request produced no response, in the form journaled and returned to the guest (as the
/// corresponding `wasi:http/types.error-code`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "code", content = "detail")]
pub enum HttpFailure {
    /// The host is not on the deployment's allowlist.
    Denied,
    ConnectionRefused,
    ConnectionTimeout,
    DnsError(String),
    TlsError,
    ProtocolError,
    InvalidUri,
    RequestBodyTooLarge,
    ResponseBodyTooLarge,
    /// No response before the attempt's deadline.
    Timeout,
    /// The attempt ended before the response arrived.
    Abandoned,
    Internal(String),
}
