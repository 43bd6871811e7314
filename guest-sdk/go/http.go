package hypergraph

// Outbound HTTP through wasi:http/outgoing-handler@0.2.12, to the deployment's allowlisted hosts
// (`hypergraph deploy ... --allow-http api.example.com`). Calls are synchronous: each returns the
// whole response. Every request and response is journaled by the host, so a replay sends nothing
// and sees the same response.
//
// The bindings below are hand-written: each //go:wasmimport has the core signature the canonical
// ABI gives the WIT function. Resources are i32 handles; an `option<T>` or a variant parameter is
// flattened to its discriminant followed by its payload's values; a result that does not fit in
// one core value is written by the host to a return area whose address is the last parameter.

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"unsafe"
)

//go:wasmimport wasi:http/types@0.2.12 [constructor]fields
func fieldsNew() uint32

//go:wasmimport wasi:http/types@0.2.12 [method]fields.append
func fieldsAppend(self uint32, name unsafe.Pointer, nameLen uint32, value unsafe.Pointer, valueLen uint32, ret unsafe.Pointer)

//go:wasmimport wasi:http/types@0.2.12 [method]fields.entries
func fieldsEntries(self uint32, ret unsafe.Pointer)

//go:wasmimport wasi:http/types@0.2.12 [resource-drop]fields
func fieldsDrop(self uint32)

//go:wasmimport wasi:http/types@0.2.12 [constructor]outgoing-request
func outgoingRequestNew(headers uint32) uint32

// set-method: func(method: method) -> result: `method` flattens to (tag, string pointer, string
// length), the string being other(string)'s; a payload-less result is one i32 (0 = ok).
//
//go:wasmimport wasi:http/types@0.2.12 [method]outgoing-request.set-method
func outgoingRequestSetMethod(self, tag uint32, other unsafe.Pointer, otherLen uint32) uint32

// set-scheme: func(scheme: option<scheme>) -> result: (is-some, scheme tag, other's pointer and
// length).
//
//go:wasmimport wasi:http/types@0.2.12 [method]outgoing-request.set-scheme
func outgoingRequestSetScheme(self, isSome, tag uint32, other unsafe.Pointer, otherLen uint32) uint32

//go:wasmimport wasi:http/types@0.2.12 [method]outgoing-request.set-authority
func outgoingRequestSetAuthority(self, isSome uint32, s unsafe.Pointer, n uint32) uint32

//go:wasmimport wasi:http/types@0.2.12 [method]outgoing-request.set-path-with-query
func outgoingRequestSetPathWithQuery(self, isSome uint32, s unsafe.Pointer, n uint32) uint32

//go:wasmimport wasi:http/types@0.2.12 [method]outgoing-request.body
func outgoingRequestBody(self uint32, ret unsafe.Pointer)

//go:wasmimport wasi:http/types@0.2.12 [resource-drop]outgoing-request
func outgoingRequestDrop(self uint32)

//go:wasmimport wasi:http/types@0.2.12 [method]outgoing-body.write
func outgoingBodyWrite(self uint32, ret unsafe.Pointer)

// finish: static func(this: outgoing-body, trailers: option<trailers>) -> result<_, error-code>.
//
//go:wasmimport wasi:http/types@0.2.12 [static]outgoing-body.finish
func outgoingBodyFinish(self, hasTrailers, trailers uint32, ret unsafe.Pointer)

//go:wasmimport wasi:http/types@0.2.12 [resource-drop]outgoing-body
func outgoingBodyDrop(self uint32)

// handle: func(request: outgoing-request, options: option<request-options>)
// -> result<future-incoming-response, error-code>.
//
//go:wasmimport wasi:http/outgoing-handler@0.2.12 handle
func outgoingHandle(request, hasOptions, options uint32, ret unsafe.Pointer)

//go:wasmimport wasi:http/types@0.2.12 [method]future-incoming-response.subscribe
func futureResponseSubscribe(self uint32) uint32

//go:wasmimport wasi:http/types@0.2.12 [method]future-incoming-response.get
func futureResponseGet(self uint32, ret unsafe.Pointer)

//go:wasmimport wasi:http/types@0.2.12 [resource-drop]future-incoming-response
func futureResponseDrop(self uint32)

//go:wasmimport wasi:http/types@0.2.12 [method]incoming-response.status
func incomingResponseStatus(self uint32) uint32

//go:wasmimport wasi:http/types@0.2.12 [method]incoming-response.headers
func incomingResponseHeaders(self uint32) uint32

//go:wasmimport wasi:http/types@0.2.12 [method]incoming-response.consume
func incomingResponseConsume(self uint32, ret unsafe.Pointer)

//go:wasmimport wasi:http/types@0.2.12 [resource-drop]incoming-response
func incomingResponseDrop(self uint32)

//go:wasmimport wasi:http/types@0.2.12 [method]incoming-body.stream
func incomingBodyStream(self uint32, ret unsafe.Pointer)

//go:wasmimport wasi:http/types@0.2.12 [resource-drop]incoming-body
func incomingBodyDrop(self uint32)

//go:wasmimport wasi:io/poll@0.2.12 [method]pollable.block
func pollableBlock(self uint32)

//go:wasmimport wasi:io/poll@0.2.12 [resource-drop]pollable
func pollableDrop(self uint32)

//go:wasmimport wasi:io/streams@0.2.12 [method]output-stream.blocking-write-and-flush
func outputStreamBlockingWriteAndFlush(self uint32, p unsafe.Pointer, n uint32, ret unsafe.Pointer)

//go:wasmimport wasi:io/streams@0.2.12 [resource-drop]output-stream
func outputStreamDrop(self uint32)

//go:wasmimport wasi:io/streams@0.2.12 [method]input-stream.blocking-read
func inputStreamBlockingRead(self uint32, n uint64, ret unsafe.Pointer)

//go:wasmimport wasi:io/streams@0.2.12 [resource-drop]input-stream
func inputStreamDrop(self uint32)

//go:wasmimport wasi:io/error@0.2.12 [method]error.to-debug-string
func ioErrorToDebugString(self uint32, ret unsafe.Pointer)

//go:wasmimport wasi:io/error@0.2.12 [resource-drop]error
func ioErrorDrop(self uint32)

// httpRet is the return area of every call above. Its largest use is future-incoming-response.get,
// whose option<result<result<incoming-response, error-code>>> is 56 bytes aligned to 8 (see
// HTTPRequest); [7]uint64 gives both. It is a package variable, never on a goroutine stack, which
// Go may move. Discriminants are single bytes: read them with retU8, never as part of a word.
var httpRet [7]uint64

func retPtr() unsafe.Pointer { return unsafe.Pointer(&httpRet) }

func retU8(off uintptr) uint8 { return *(*uint8)(unsafe.Add(retPtr(), off)) }

func retU32(off uintptr) uint32 { return *(*uint32)(unsafe.Add(retPtr(), off)) }

// Header is one HTTP header field.
type Header struct {
	Name  string
	Value string
}

// Response is an HTTP response, read completely. A status like 404 or 500 is a response, not an
// error.
type Response struct {
	Status  int
	Headers []Header // in the order received, repeated names included
	Body    []byte
}

// OK is true for a 2xx status.
func (r *Response) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Header is the first value of header name (case-insensitive), or "" when there is none.
func (r *Response) Header(name string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// Text is the body as a string.
func (r *Response) Text() string { return string(r.Body) }

// JSON unmarshals the body into out.
func (r *Response) JSON(out any) error { return json.Unmarshal(r.Body, out) }

// HTTPError is a request that produced no response. Denied is true when the host is not on the
// deployment's allowlist; Code is the wasi:http error-code case ("HTTP-request-denied",
// "connection-refused", ...) when the host reported one, and "" for a URL or header refused
// before sending.
type HTTPError struct {
	Message string
	Code    string
	Denied  bool
}

func (e *HTTPError) Error() string { return e.Message }

func httpErrorf(format string, args ...any) *HTTPError {
	return &HTTPError{Message: fmt.Sprintf(format, args...)}
}

// errorCodes names the cases of wasi:http/types.error-code, in WIT order (the discriminant).
var errorCodes = [...]string{
	"DNS-timeout", "DNS-error", "destination-not-found", "destination-unavailable",
	"destination-IP-prohibited", "destination-IP-unroutable", "connection-refused",
	"connection-terminated", "connection-timeout", "connection-read-timeout",
	"connection-write-timeout", "connection-limit-reached", "TLS-protocol-error",
	"TLS-certificate-error", "TLS-alert-received", "HTTP-request-denied",
	"HTTP-request-length-required", "HTTP-request-body-size", "HTTP-request-method-invalid",
	"HTTP-request-URI-invalid", "HTTP-request-URI-too-long", "HTTP-request-header-section-size",
	"HTTP-request-header-size", "HTTP-request-trailer-section-size", "HTTP-request-trailer-size",
	"HTTP-response-incomplete", "HTTP-response-header-section-size", "HTTP-response-header-size",
	"HTTP-response-body-size", "HTTP-response-trailer-section-size", "HTTP-response-trailer-size",
	"HTTP-response-transfer-coding", "HTTP-response-content-coding", "HTTP-response-timeout",
	"HTTP-upgrade-failed", "HTTP-protocol-error", "loop-detected", "configuration-error",
	"internal-error",
}

const (
	codeDNSError      = 1
	codeDenied        = 15
	codeInternalError = 38
)

// failure is the error-code laid out at httpRet[off:], for a request to authority.
//
// error-code is a variant of 39 cases: a u8 discriminant at +0, then the payload at +8 (8 is the
// largest payload alignment, option<u64>'s); 32 bytes in all. Two payloads carry text worth
// reporting, both starting with an option<string> (u8 tag at +0, pointer at +4, length at +8 of
// the payload): DNS-error's record's `rcode`, and internal-error's option<string>.
func failure(off uintptr, authority string) *HTTPError {
	tag := retU8(off)
	if tag == codeDenied {
		return &HTTPError{
			Message: fmt.Sprintf("the request was denied: %s is not on this deployment's HTTP allowlist "+
				"(hypergraph deploy --allow-http %s allows it)", authority, authority),
			Code:   errorCodes[tag],
			Denied: true,
		}
	}
	code := fmt.Sprintf("error-code %d", tag)
	if int(tag) < len(errorCodes) {
		code = errorCodes[tag]
	}
	message := fmt.Sprintf("the request to %s failed: %s", authority, code)
	if (tag == codeDNSError || tag == codeInternalError) && retU8(off+8) == 1 {
		message += " (" + liftString(retU32(off+12), retU32(off+16)) + ")"
	}
	return &HTTPError{Message: message, Code: code}
}

// streamFailure describes a stream-error laid out at httpRet[4:] (inside a result whose u8
// discriminant is at +0): the variant's u8 tag at +4 (0 = last-operation-failed, 1 = closed) and
// last-operation-failed's `error` handle at +8.
func streamFailure() string {
	if retU8(4) == 1 {
		return "the stream is closed"
	}
	handle := retU32(8)
	ioErrorToDebugString(handle, retPtr()) // a string: pointer at +0, length at +4
	text := liftString(retU32(0), retU32(4))
	ioErrorDrop(handle)
	return text
}

// splitURL splits an absolute http(s) URL into its scheme tag (0 = HTTP, 1 = HTTPS, the cases of
// wasi:http/types.scheme), authority and path with query.
func splitURL(url string) (uint32, string, string, error) {
	scheme, rest, found := strings.Cut(url, "://")
	if !found {
		return 0, "", "", httpErrorf("`%s` is not an absolute http(s) URL", url)
	}
	var tag uint32
	switch strings.ToLower(scheme) {
	case "http":
		tag = 0
	case "https":
		tag = 1
	default:
		return 0, "", "", httpErrorf("unsupported URL scheme `%s`", scheme)
	}
	rest, _, _ = strings.Cut(rest, "#")
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, path := rest[:end], rest[end:]
	if authority == "" {
		return 0, "", "", httpErrorf("`%s` has no host", url)
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return tag, authority, path, nil
}

// methods are the cases of wasi:http/types.method before other(string), in WIT order.
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// headerErrors names the cases of wasi:http/types.header-error.
var headerErrors = [...]string{"invalid-syntax", "forbidden", "immutable"}

// newFields makes a fields resource holding headers, sorted by name so that the request (which
// is journaled and compared on replay) does not depend on map order.
func newFields(headers map[string]string) (uint32, error) {
	names := make([]string, 0, len(headers))
	for name := range headers {
		names = append(names, name)
	}
	sort.Strings(names)
	fields := fieldsNew()
	for _, name := range names {
		value := headers[name]
		// append: func(name, value: list<u8>) -> result<_, header-error>: a u8 discriminant at
		// +0, header-error's u8 tag at +1.
		fieldsAppend(fields, stringPtr(name), uint32(len(name)), stringPtr(value), uint32(len(value)), retPtr())
		if retU8(0) != 0 {
			fieldsDrop(fields)
			reason := "invalid"
			if tag := retU8(1); int(tag) < len(headerErrors) {
				reason = headerErrors[tag]
			}
			return 0, httpErrorf("invalid request header `%s`: %s", name, reason)
		}
	}
	return fields, nil
}

// HTTPRequest sends method url (http:// or https://) with headers (sent sorted by name) and body
// (nil for none), and reads the whole response. The error, an *HTTPError, means no response came:
// the host is not allowlisted (Denied), the connection was refused, timed out, ... .
func HTTPRequest(method, url string, headers map[string]string, body []byte) (*Response, error) {
	scheme, authority, path, err := splitURL(url)
	if err != nil {
		return nil, err
	}
	fields, err := newFields(headers)
	if err != nil {
		return nil, err
	}
	request := outgoingRequestNew(fields) // takes the fields over

	// The method: a known case by its tag, anything else as other(string) (tag 9).
	tag, other := uint32(len(methods)), method
	for i, known := range methods {
		if strings.EqualFold(method, known) {
			tag, other = uint32(i), ""
		}
	}
	if outgoingRequestSetMethod(request, tag, stringPtr(other), uint32(len(other))) != 0 {
		outgoingRequestDrop(request)
		return nil, httpErrorf("invalid HTTP method `%s`", method)
	}
	outgoingRequestSetScheme(request, 1, scheme, nil, 0)
	if outgoingRequestSetAuthority(request, 1, stringPtr(authority), uint32(len(authority))) != 0 {
		outgoingRequestDrop(request)
		return nil, httpErrorf("invalid host `%s` in `%s`", authority, url)
	}
	if outgoingRequestSetPathWithQuery(request, 1, stringPtr(path), uint32(len(path))) != 0 {
		outgoingRequestDrop(request)
		return nil, httpErrorf("invalid path `%s` in `%s`", path, url)
	}

	// body: func() -> result<outgoing-body>: u8 discriminant at +0, the handle at +4 (it succeeds
	// on the first call).
	outgoingRequestBody(request, retPtr())
	outgoing := retU32(4)

	// Hand the request over first: the host reads the body while the guest writes it.
	// result<future-incoming-response, error-code>: u8 discriminant at +0, the payload at +8
	// (error-code's alignment): the future's handle, or the error-code.
	outgoingHandle(request, 0, 0, retPtr())
	if retU8(0) != 0 {
		outgoingBodyDrop(outgoing)
		return nil, failure(8, authority)
	}
	future := retU32(8)

	// write: func() -> result<output-stream>, like body above. blocking-write-and-flush takes at
	// most 4096 bytes a call and returns result<_, stream-error> (see streamFailure).
	outgoingBodyWrite(outgoing, retPtr())
	out := retU32(4)
	for at := 0; at < len(body); at += 4096 {
		chunk := body[at:min(at+4096, len(body))]
		outputStreamBlockingWriteAndFlush(out, unsafe.Pointer(unsafe.SliceData(chunk)), uint32(len(chunk)), retPtr())
		if retU8(0) != 0 {
			reason := streamFailure()
			outputStreamDrop(out)
			outgoingBodyDrop(outgoing)
			futureResponseDrop(future)
			return nil, httpErrorf("sending the request body to %s failed: %s", authority, reason)
		}
	}
	outputStreamDrop(out) // the stream goes before its body is finished
	// finish -> result<_, error-code>: u8 discriminant at +0, the error-code at +8.
	outgoingBodyFinish(outgoing, 0, 0, retPtr())
	if retU8(0) != 0 {
		futureResponseDrop(future)
		return nil, failure(8, authority)
	}

	pollable := futureResponseSubscribe(future)
	pollableBlock(pollable)
	pollableDrop(pollable)
	// get: func() -> option<result<result<incoming-response, error-code>>>. Each level is a u8
	// discriminant followed by its payload at the next multiple of 8 (error-code's alignment):
	//   +0  option: 1 = some (the response is ready; it is, after block)
	//   +8  result: 0 = ok (1 = the response was already taken)
	//   +16 result: 0 = ok, 1 = err
	//   +24 the incoming-response handle, or the error-code (its payload at +32); 56 bytes in all.
	futureResponseGet(future, retPtr())
	futureResponseDrop(future)
	if retU8(0) != 1 || retU8(8) != 0 {
		return nil, httpErrorf("the response from %s was already taken", authority)
	}
	if retU8(16) != 0 {
		return nil, failure(24, authority)
	}
	incoming := retU32(24)

	response := &Response{Status: int(incomingResponseStatus(incoming))}
	// entries: func() -> list<tuple<field-name, field-value>>: the list's pointer at +0 and count
	// at +4; each tuple is 16 bytes: the name's pointer and length, the value's pointer and length.
	headerFields := incomingResponseHeaders(incoming)
	fieldsEntries(headerFields, retPtr())
	if count := retU32(4); count > 0 {
		entries := unsafe.Slice((*[4]uint32)(unsafe.Pointer(uintptr(retU32(0)))), count)
		for _, e := range entries {
			response.Headers = append(response.Headers, Header{liftString(e[0], e[1]), liftString(e[2], e[3])})
		}
	}
	fieldsDrop(headerFields) // a child of the response: dropped before it

	// consume and stream: result<incoming-body> and result<input-stream>, like body above.
	incomingResponseConsume(incoming, retPtr())
	inBody := retU32(4)
	incomingBodyStream(inBody, retPtr())
	in := retU32(4)
	var readErr error
	for {
		// blocking-read -> result<list<u8>, stream-error>: u8 discriminant at +0; the list's
		// pointer at +4 and length at +8, or the stream-error; `closed` is the end of the body.
		inputStreamBlockingRead(in, 64<<10, retPtr())
		if retU8(0) != 0 {
			if retU8(4) != 1 {
				readErr = httpErrorf("reading the response from %s failed: %s", authority, streamFailure())
			}
			break
		}
		if n := retU32(8); n > 0 {
			response.Body = append(response.Body, unsafe.Slice((*byte)(unsafe.Pointer(uintptr(retU32(4)))), n)...)
		}
	}
	// The stream goes before its body, the body before the response.
	inputStreamDrop(in)
	incomingBodyDrop(inBody)
	incomingResponseDrop(incoming)
	if readErr != nil {
		return nil, readErr
	}
	if response.Body == nil {
		response.Body = []byte{}
	}
	return response, nil
}

// HTTPGet is `GET url` with headers (nil for none).
func HTTPGet(url string, headers map[string]string) (*Response, error) {
	return HTTPRequest("GET", url, headers, nil)
}

// HTTPPost is `POST url` with body and headers (nil for none).
func HTTPPost(url string, body []byte, headers map[string]string) (*Response, error) {
	return HTTPRequest("POST", url, headers, body)
}

// HTTPPostJSON is `POST url` with value marshalled by encoding/json as the body, and a
// `content-type: application/json` header unless headers has a content-type.
func HTTPPostJSON(url string, value any, headers map[string]string) (*Response, error) {
	body, err := json.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("encoding the request body as JSON: %w", err)
	}
	all := map[string]string{"content-type": "application/json"}
	for name, v := range headers {
		if strings.EqualFold(name, "content-type") {
			delete(all, "content-type")
		}
		all[name] = v
	}
	return HTTPRequest("POST", url, all, body)
}
