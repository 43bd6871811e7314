//! Outbound HTTP through `wasi:http/outgoing-handler`.
//!
//! The host sends a request only to hosts on the deployment's allowlist
//! (`hypergraph deploy --allow-http <host>`; none by default); any other request fails with an
//! [`Error`] for which [`Error::is_denied`] is true, and the attempt's log gets a line saying so.
//! Every request and response is recorded in the attempt's journal, so a replay returns the same
//! response without any network access.
//!
//! ```ignore
//! let response = hypergraph_guest::http::get("http://127.0.0.1:8080/quote")?;
//! let text = response.text()?;
//! let created = hypergraph_guest::http::Request::post("https://api.example.com/items", body)
//!     .header("content-type", "application/json")
//!     .send()?;
//! ```

use crate::bindings::http::outgoing_handler;
use crate::bindings::io::streams::StreamError;
use crate::bindings::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};

/// Bytes written to the request body stream per call (the most `wasi:io` promises to accept).
const WRITE_CHUNK: usize = 4096;
/// Bytes asked for per read of the response body.
const READ_CHUNK: u64 = 64 * 1024;

/// Why a request produced no response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    message: String,
    denied: bool,
}

impl Error {
    fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            denied: false,
        }
    }

    fn from_code(code: ErrorCode) -> Error {
        let denied = matches!(code, ErrorCode::HttpRequestDenied);
        let message = if denied {
            "the request was denied: the host is not on this deployment's HTTP allowlist".into()
        } else {
            format!("the request failed: {code:?}")
        };
        Error { message, denied }
    }

    /// True when the host refused the request because its destination is not allowlisted.
    pub fn is_denied(&self) -> bool {
        self.denied
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// An HTTP request to send; build it with [`Request::get`], [`Request::post`] or [`Request::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// A request with `method` (e.g. `"PUT"`) to `url` (`http://` or `https://`).
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET` request.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    /// A `POST` request with `body`.
    pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Request {
        Request::new("POST", url).body(body)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, Error> {
        let (scheme, authority, path) = split_url(&self.url)?;
        let entries: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.as_bytes().to_vec()))
            .collect();
        let headers = Fields::from_list(&entries)
            .map_err(|e| Error::new(format!("invalid request header: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        request
            .set_method(&method(&self.method))
            .map_err(|()| Error::new(format!("invalid method `{}`", self.method)))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| Error::new("invalid scheme"))?;
        request
            .set_authority(Some(authority))
            .map_err(|()| Error::new(format!("invalid authority `{authority}`")))?;
        request
            .set_path_with_query(Some(path))
            .map_err(|()| Error::new(format!("invalid path `{path}`")))?;
        let body = request
            .body()
            .map_err(|()| Error::new("the request body was already taken"))?;
        // Hand the request over first: the host reads the body while the guest writes it.
        let future = outgoing_handler::handle(request, None).map_err(Error::from_code)?;
        write_body(body, &self.body)?;
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(Error::from_code(code)),
            Some(Err(())) | None => return Err(Error::new("the response was already taken")),
        };
        let status = response.status();
        let headers = response.headers().entries();
        let body = response
            .consume()
            .map_err(|()| Error::new("the response body was already taken"))?;
        Ok(Response {
            status,
            headers,
            body: read_body(body)?,
        })
    }
}

/// A response, read completely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, in order, with lowercase names.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body).map_err(|e| Error::new(format!("body is not UTF-8: {e}")))
    }

    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    Request::get(url).send()
}

fn method(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(name.to_string()),
    }
}

/// Splits `scheme://authority/path?query` into its parts (the path defaults to `/`).
fn split_url(url: &str) -> Result<(Scheme, &str, &str), Error> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::new(format!("`{url}` is not an absolute http(s) URL")))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(Error::new(format!("unsupported URL scheme `{other}`"))),
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() {
        return Err(Error::new(format!("`{url}` has no host")));
    }
    Ok((scheme, authority, if path.is_empty() { "/" } else { path }))
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), Error> {
    {
        let stream = body
            .write()
            .map_err(|()| Error::new("the request body stream was already taken"))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| Error::new(format!("writing the request body failed: {e:?}")))?;
        }
        // The stream must be dropped before the body is finished.
    }
    OutgoingBody::finish(body, None).map_err(Error::from_code)
}

fn read_body(body: IncomingBody) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|()| Error::new("the response body stream was already taken"))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(Error::new(format!("reading the response failed: {e:?}"))),
            }
        }
        // The stream must be dropped before the body.
    }
    drop(body);
    Ok(bytes)
}
