//! The journal entry of `wasi:http/outgoing-handler` (served by `hypergraph_capabilities::http`):
//! each request the guest sent and what came back.

use serde::{Deserialize, Serialize};

use crate::http::{HttpOutcome, HttpRequest};

/// The namespaces of this family's kinds (`http.<call>`).
pub(super) const NAMESPACES: &[&str] = &["http"];

/// An HTTP exchange of the guest. Its serde tag (`kind`) is the stored kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum HttpEntry {
    /// `wasi:http/outgoing-handler.handle`: the request the guest sent and what came back.
    #[serde(rename = "http.request")]
    Request {
        request: HttpRequest,
        outcome: HttpOutcome,
    },
}

impl HttpEntry {
    /// The stored kind, identical to the serde tag.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpEntry::Request { .. } => "http.request",
        }
    }

    /// True when this recorded entry is the answer to `call`: the same method, URI and headers
    /// (the body is compared when it has been written, see `Deferred::complete`).
    pub fn answers(&self, call: &HttpCall) -> bool {
        let (
            HttpEntry::Request { request, .. },
            HttpCall::Request {
                method,
                uri,
                headers,
            },
        ) = (self, call);
        request.method == *method && request.uri == *uri && request.headers == *headers
    }
}

/// An HTTP request as the guest hands it over, before its body: what an [`HttpEntry`] must
/// answer in replay. Serialized (in a divergence) under the kind of its entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind")]
pub enum HttpCall {
    #[serde(rename = "http.request")]
    Request {
        method: String,
        uri: String,
        headers: Vec<(String, String)>,
    },
}
