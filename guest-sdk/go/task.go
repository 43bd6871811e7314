package hypergraph

import (
	"fmt"
	"unsafe"
)

// Level is the severity of a log line (hypergraph:task/log.level).
type Level uint32

const (
	Trace Level = iota
	Debug
	Info
	Warn
	Error
)

//go:wasmimport hypergraph:task/log@0.1.0 log
func logImport(level uint32, msg unsafe.Pointer, msgLen uint32)

// Log appends one line to the run's log. fmt.Println and os.Stderr work too: every line written
// to stdout or stderr becomes a log line.
func Log(level Level, message string) {
	logImport(uint32(level), stringPtr(message), uint32(len(message)))
}

// Infof logs a formatted line at info level.
func Infof(format string, args ...any) { Log(Info, fmt.Sprintf(format, args...)) }

// Warnf logs a formatted line at warn level.
func Warnf(format string, args ...any) { Log(Warn, fmt.Sprintf(format, args...)) }

// Errorf logs a formatted line at error level.
func Errorf(format string, args ...any) { Log(Error, fmt.Sprintf(format, args...)) }

//go:wasmimport hypergraph:task/context@0.1.0 run-id
func runIDImport(ret unsafe.Pointer)

//go:wasmimport hypergraph:task/context@0.1.0 task-name
func taskNameImport(ret unsafe.Pointer)

//go:wasmimport hypergraph:task/context@0.1.0 attempt
func attemptImport() uint32

// RunID is the id of the run this attempt belongs to.
func RunID() string {
	var ret [2]uint32
	runIDImport(unsafe.Pointer(&ret))
	return liftString(ret[0], ret[1])
}

// TaskName is the full task name, `<deployment>/<function>`.
func TaskName() string {
	var ret [2]uint32
	taskNameImport(unsafe.Pointer(&ret))
	return liftString(ret[0], ret[1])
}

// Attempt is the attempt number of the current step, from 1.
func Attempt() uint32 { return attemptImport() }

//go:wasmimport hypergraph:task/kv@0.1.0 get
func kvGetImport(key unsafe.Pointer, keyLen uint32, ret unsafe.Pointer)

//go:wasmimport hypergraph:task/kv@0.1.0 set
func kvSetImport(key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32)

//go:wasmimport hypergraph:task/kv@0.1.0 delete
func kvDeleteImport(key unsafe.Pointer, keyLen uint32)

//go:wasmimport hypergraph:task/kv@0.1.0 list-keys
func kvListKeysImport(prefix unsafe.Pointer, prefixLen uint32, ret unsafe.Pointer)

// KVGet is the value stored under key (scoped to this deployment), and whether there is one.
// Reads are journaled; writes become visible to other runs when this attempt succeeds.
func KVGet(key string) ([]byte, bool) {
	var ret [3]uint32
	kvGetImport(stringPtr(key), uint32(len(key)), unsafe.Pointer(&ret))
	if ret[0]&0xff == 0 {
		return nil, false
	}
	return liftBytes(ret[1], ret[2]), true
}

// KVGetString is KVGet as a string.
func KVGetString(key string) (string, bool) {
	b, ok := KVGet(key)
	return string(b), ok
}

// KVSet stores value under key.
func KVSet(key string, value []byte) {
	kvSetImport(stringPtr(key), uint32(len(key)), unsafe.Pointer(unsafe.SliceData(value)), uint32(len(value)))
}

// KVSetString stores a string under key.
func KVSetString(key, value string) {
	kvSetImport(stringPtr(key), uint32(len(key)), stringPtr(value), uint32(len(value)))
}

// KVDelete removes key (removing a missing key is not an error).
func KVDelete(key string) { kvDeleteImport(stringPtr(key), uint32(len(key))) }

// KVListKeys lists the keys starting with prefix, in byte order.
func KVListKeys(prefix string) []string {
	var ret [2]uint32
	kvListKeysImport(stringPtr(prefix), uint32(len(prefix)), unsafe.Pointer(&ret))
	keys := make([]string, ret[1])
	items := unsafe.Slice((*[2]uint32)(unsafe.Pointer(uintptr(ret[0]))), ret[1])
	for i, item := range items {
		keys[i] = liftString(item[0], item[1])
	}
	return keys
}
