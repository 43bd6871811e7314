// Package workflow holds the calls of a workflow task: start child tasks and join them, call one,
// sleep durably and wait for external events. Use it from a task whose world includes
// hypergraph:task/workflow@0.1.0. Inputs and outputs are JSON: an input is any value
// encoding/json can marshal, an output is decoded into what the caller passes.
//
// A workflow is re-executed from its journal after each child finishes, sleep ends or event
// arrives: completed calls return their recorded results at once and start nothing again, so the
// code must make the same calls in the same order on every execution (it does, as long as its
// non-determinism comes from the host: time, randomness, kv, child results).
package workflow

import (
	"encoding/json"
	"fmt"
	"time"
	"unsafe"
)

//go:wasmimport hypergraph:workflow/workflow@0.1.0 start
func startImport(task unsafe.Pointer, taskLen uint32, input unsafe.Pointer, inputLen uint32, ret unsafe.Pointer)

//go:wasmimport hypergraph:workflow/workflow@0.1.0 join
func joinImport(children unsafe.Pointer, count uint32, ret unsafe.Pointer)

//go:wasmimport hypergraph:workflow/workflow@0.1.0 call
func callImport(task unsafe.Pointer, taskLen uint32, input unsafe.Pointer, inputLen uint32, ret unsafe.Pointer)

//go:wasmimport hypergraph:workflow/workflow@0.1.0 sleep
func sleepImport(millis uint64)

//go:wasmimport hypergraph:workflow/workflow@0.1.0 wait-event
func waitEventImport(name unsafe.Pointer, nameLen uint32, hasTimeout uint32, timeoutMillis uint64, ret unsafe.Pointer)

// ChildError is how a child failed: its error kind (`application` when it returned an error
// value), the message, and the error value as JSON text, if any.
type ChildError struct {
	Kind    string
	Message string
	Value   *string
}

func (e *ChildError) Error() string {
	if e.Value != nil {
		return fmt.Sprintf("child task failed (%s): %s: %s", e.Kind, e.Message, *e.Value)
	}
	return fmt.Sprintf("child task failed (%s): %s", e.Kind, e.Message)
}

// Result is the outcome of one joined child: its output as JSON text, or its error.
type Result struct {
	Output json.RawMessage
	Err    *ChildError
}

// Decode unmarshals the child's output into out, or returns its error.
func (r Result) Decode(out any) error {
	if r.Err != nil {
		return r.Err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(r.Output, out)
}

func str(s string) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}

func lift(ptr, length uint32) string {
	if length == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), length))
}

func encode(input any) (string, error) {
	text, err := json.Marshal(input)
	if err != nil {
		return "", fmt.Errorf("encoding the child's input as JSON: %w", err)
	}
	return string(text), nil
}

// Start starts the task `task` (`<deployment>/<function>`) with `input` and returns the child's
// handle for Join. It does not wait.
func Start(task string, input any) (uint32, error) {
	text, err := encode(input)
	if err != nil {
		return 0, err
	}
	var ret [3]uint32
	tp, tl := str(task)
	ip, il := str(text)
	startImport(tp, tl, ip, il, unsafe.Pointer(&ret))
	if ret[0]&0xff != 0 {
		return 0, fmt.Errorf("starting %s: %s", task, lift(ret[1], ret[2]))
	}
	return ret[1], nil
}

// 32 bytes: result<string, child-error> in the canonical ABI.
type rawResult [8]uint32

func (r *rawResult) result() Result {
	if r[0]&0xff == 0 {
		return Result{Output: json.RawMessage(lift(r[1], r[2]))}
	}
	e := &ChildError{Kind: lift(r[1], r[2]), Message: lift(r[3], r[4])}
	if r[5]&0xff != 0 {
		v := lift(r[6], r[7])
		e.Value = &v
	}
	return Result{Err: e}
}

// Join waits for the children (handles from Start) and returns their results in the same order.
func Join(children ...uint32) []Result {
	var ret [2]uint32
	joinImport(unsafe.Pointer(unsafe.SliceData(children)), uint32(len(children)), unsafe.Pointer(&ret))
	raw := unsafe.Slice((*rawResult)(unsafe.Pointer(uintptr(ret[0]))), ret[1])
	out := make([]Result, len(raw))
	for i := range raw {
		out[i] = raw[i].result()
	}
	return out
}

// Call starts `task` with `input`, waits for it and decodes its output into `out` (nil to ignore
// it). A child that failed returns a *ChildError.
func Call(task string, input any, out any) error {
	text, err := encode(input)
	if err != nil {
		return err
	}
	var ret rawResult
	tp, tl := str(task)
	ip, il := str(text)
	callImport(tp, tl, ip, il, unsafe.Pointer(&ret))
	return ret.result().Decode(out)
}

// Sleep suspends the workflow durably for d (it may be resumed by another worker).
func Sleep(d time.Duration) { sleepImport(uint64(d.Milliseconds())) }

// WaitEvent waits for the event `name` sent to this run and returns its payload (JSON text);
// false when timeout (if positive) passed first.
func WaitEvent(name string, timeout time.Duration) (string, bool) {
	var ret [3]uint32
	np, nl := str(name)
	var has uint32
	if timeout > 0 {
		has = 1
	}
	waitEventImport(np, nl, has, uint64(timeout.Milliseconds()), unsafe.Pointer(&ret))
	if ret[0]&0xff == 0 {
		return "", false
	}
	return lift(ret[1], ret[2]), true
}
