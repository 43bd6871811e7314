// Go guest of the host's guarantee tests: fresh instances, journaled non-determinism, panics,
// kv and outbound HTTP.
package main

import (
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"
	"unsafe"

	hg "hypergraph.local/guest"
)

var count uint32

//go:wasmexport bump
func bump() uint32 {
	count++
	return count
}

//go:wasmexport entropy
func entropy() unsafe.Pointer {
	bytes := make([]byte, 4)
	if _, err := crand.Read(bytes); err != nil {
		panic(err)
	}
	seen := map[string]any{
		"time":  time.Now().UnixNano(),
		"rand":  []uint64{rand.Uint64(), rand.Uint64()},
		"bytes": bytes,
	}
	text, _ := json.Marshal(seen)
	hg.Infof("entropy %s", text)
	return hg.ReturnString(string(text))
}

func inner(message string) {
	panic("giving up: " + message)
}

//go:wasmexport fail
func fail(message string) uint32 {
	fmt.Fprintln(os.Stderr, "about to fail")
	inner(message)
	return 0
}

//go:wasmexport remember
func remember(key, value string) unsafe.Pointer {
	previous, found := hg.KVGetString(key)
	hg.KVSetString(key, value)
	if !found {
		return hg.ReturnNone()
	}
	return hg.ReturnOptionString(previous)
}

//go:wasmexport fetch
func fetch(request string) unsafe.Pointer {
	var req struct {
		Method  string            `json:"method"`
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
		Body    *string           `json:"body"`
	}
	if err := json.Unmarshal([]byte(request), &req); err != nil {
		return hg.ReturnResult("", err)
	}
	var body []byte
	if req.Body != nil {
		body = []byte(*req.Body)
	}
	response, err := hg.HTTPRequest(req.Method, req.URL, req.Headers, body)
	if err != nil {
		var failed *hg.HTTPError
		if !errors.As(err, &failed) {
			return hg.ReturnResult("", err)
		}
		text, _ := json.Marshal(map[string]any{"message": failed.Message, "code": failed.Code, "denied": failed.Denied})
		return hg.ReturnResult("", errors.New(string(text)))
	}
	headers := [][2]string{}
	for _, h := range response.Headers {
		headers = append(headers, [2]string{h.Name, h.Value})
	}
	text, _ := json.Marshal(map[string]any{
		"status":       response.Status,
		"ok":           response.OK(),
		"headers":      headers,
		"content-type": response.Header("Content-Type"),
		"body":         response.Text(),
	})
	hg.Infof("%s %s: %d", req.Method, req.URL, response.Status)
	return hg.ReturnResult(string(text), nil)
}

func main() {}
