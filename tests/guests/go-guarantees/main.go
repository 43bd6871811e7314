// Go guest of the host's guarantee tests: fresh instances, journaled non-determinism, panics.
package main

import (
	crand "crypto/rand"
	"encoding/json"
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

func main() {}
