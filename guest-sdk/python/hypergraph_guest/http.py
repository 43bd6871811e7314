"""Outbound HTTP through ``wasi:http/outgoing-handler``, to the deployment's allowlisted hosts.

``hypergraph deploy ... --allow-http api.example.com`` allows a host; any other is denied
(:class:`HttpError` with ``denied`` true). Every request and response is journaled, so a replay
sends nothing and sees the same response. Calls are synchronous::

    from hypergraph_guest import http

    response = http.get("http://127.0.0.1:8080/quote")
    quote = response.json()
    created = http.request("POST", "https://api.example.com/items", body=b"...",
                           headers={"content-type": "application/json"})
"""

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ._bindings import imports

__all__ = ["HttpError", "Response", "request", "get", "post"]

WRITE_CHUNK = 4096
READ_CHUNK = 64 * 1024


class HttpError(Exception):
    """A request produced no response: denied by the allowlist, refused, timed out, ..."""

    def __init__(self, message: str, denied: bool = False):
        super().__init__(message)
        self.denied = denied


@dataclass
class Response:
    """A response, read completely."""

    status: int
    headers: List[Tuple[str, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name`` (case-insensitive), as text."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value.decode(errors="replace")
        return None

    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode()

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300


def _error(code: Any) -> HttpError:
    name = code.__class__.__name__.removeprefix("ErrorCode_")
    if name == "HttpRequestDenied":
        return HttpError(
            "the request was denied: the host is not on this deployment's HTTP allowlist "
            "(hypergraph deploy --allow-http <host>)",
            denied=True,
        )
    detail = getattr(code, "value", None)
    return HttpError(f"the request failed: {name}" + (f" ({detail})" if detail is not None else ""))


def _method(types: Any, name: str) -> Any:
    upper = name.upper()
    known = {
        "GET": "Get",
        "HEAD": "Head",
        "POST": "Post",
        "PUT": "Put",
        "DELETE": "Delete",
        "CONNECT": "Connect",
        "OPTIONS": "Options",
        "TRACE": "Trace",
        "PATCH": "Patch",
    }
    if upper in known:
        return getattr(types, "Method_" + known[upper])()
    return types.Method_Other(name)


def _split(url: str) -> Tuple[str, str, str]:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise HttpError(f"`{url}` is not an absolute http(s) URL")
    cut = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if not authority:
        raise HttpError(f"`{url}` has no host")
    if scheme.lower() not in ("http", "https"):
        raise HttpError(f"unsupported URL scheme `{scheme}`")
    return scheme.lower(), authority, path or "/"


def request(
    method: str,
    url: str,
    body: Union[bytes, str, None] = None,
    headers: Optional[Mapping[str, str]] = None,
) -> Response:
    """Sends a request and reads the whole response. Raises :class:`HttpError`."""
    types = imports("wasi_http_types")
    handler = imports("outgoing_handler")
    scheme, authority, path = _split(url)
    if isinstance(body, str):
        body = body.encode()
    entries = [(k, v.encode()) for k, v in (headers or {}).items()]
    try:
        fields = types.Fields.from_list(entries)
    except Exception as e:
        raise HttpError(f"invalid request header: {getattr(e, 'value', e)}") from None
    req = types.OutgoingRequest(fields)
    req.set_method(_method(types, method))
    req.set_scheme(types.Scheme_Http() if scheme == "http" else types.Scheme_Https())
    req.set_authority(authority)
    req.set_path_with_query(path)
    outgoing = req.body()
    # Hand the request over first: the host reads the body while the guest writes it.
    try:
        future = handler.handle(req, None)
    except Exception as e:
        raise _error(getattr(e, "value", e)) from None
    with outgoing.write() as stream:
        data = body or b""
        for i in range(0, len(data), WRITE_CHUNK):
            stream.blocking_write_and_flush(data[i : i + WRITE_CHUNK])
    try:
        types.OutgoingBody.finish(outgoing, None)
    except Exception as e:
        raise _error(getattr(e, "value", e)) from None
    with future:
        with future.subscribe() as pollable:
            pollable.block()
        outcome = future.get()
    if outcome is None or outcome.__class__.__name__ == "Err":
        raise HttpError("the response was already taken")
    inner = outcome.value
    if inner.__class__.__name__ == "Err":
        raise _error(inner.value)
    chunks = []
    with inner.value as response:
        status = response.status()
        with response.headers() as fields:
            header_list = fields.entries()
        with response.consume() as incoming:
            # The stream must be dropped before its body, the body before the response.
            with incoming.stream() as stream:
                while True:
                    try:
                        chunks.append(stream.blocking_read(READ_CHUNK))
                    except Exception as e:
                        if getattr(e, "value", None).__class__.__name__ == "StreamError_Closed":
                            break
                        raise HttpError(
                            f"reading the response failed: {getattr(e, 'value', e)}"
                        ) from None
    return Response(status, header_list, b"".join(chunks))


def get(url: str, headers: Optional[Mapping[str, str]] = None) -> Response:
    """``GET url``."""
    return request("GET", url, headers=headers)


def post(url: str, body: Union[bytes, str, Any], headers: Optional[Dict[str, str]] = None) -> Response:
    """``POST url`` with ``body``: bytes or text as they are, anything else as JSON (with a
    ``content-type: application/json`` header unless one is given)."""
    headers = dict(headers or {})
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        headers.setdefault("content-type", "application/json")
    return request("POST", url, body=body, headers=headers)
