// Package hypergraph is the Go SDK of Hypergraph tasks: log, context, key-value and the workflow
// calls, over hand-written bindings of the host's WIT (the component model's canonical ABI, by
// //go:wasmimport), plus the helpers an export needs to take and return strings and lists.
//
// `hypergraph build` compiles a Go task project (a go.mod beside a wit/ holding the task's world)
// with Go's own wasip1 port as a reactor (-buildmode=c-shared) and turns the core module into a
// component with the world embedded and the WASI preview-1 adapter. This package is supplied by
// the build (a Go workspace): a project imports "hypergraph.local/guest" and needs nothing in its
// go.mod.
//
// An export of the world is a //go:wasmexport function with the canonical ABI's core signature:
//
//	export bump: func() -> u32;              //go:wasmexport bump
//	                                         func bump() uint32
//	export greet: func(name: string) -> string;
//	                                         //go:wasmexport greet
//	                                         func greet(name string) unsafe.Pointer {
//	                                             return hypergraph.ReturnString("Hello, " + name + "!")
//	                                         }
//
// Strings arrive as Go strings (the host writes them into memory this package allocates); a
// list<u8> parameter arrives as (pointer, length): hypergraph.Bytes makes it a []byte. A result
// that is a string, a list or an option is returned through a pointer (ReturnString, ReturnBytes,
// ReturnOptionString, ReturnNone). Every run gets a fresh instance, so package-level variables
// hold their initial values on every run, and memory is never reused across runs.
package hypergraph

import "unsafe"

// pinned keeps every block the host asked for (cabi_realloc) alive for the rest of the instance,
// which lives for one run.
var pinned [][]byte

// cabiRealloc is the allocator the host writes strings and lists into (canonical ABI realloc).
//
//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, newSize uint32) unsafe.Pointer {
	if newSize == 0 {
		return unsafe.Pointer(uintptr(align))
	}
	buf := make([]byte, newSize+align)
	pad := (align - uint32(uintptr(unsafe.Pointer(&buf[0])))%align) % align
	p := unsafe.Pointer(&buf[pad])
	if old != nil && oldSize > 0 {
		copy(unsafe.Slice((*byte)(p), newSize), unsafe.Slice((*byte)(old), min(oldSize, newSize)))
	}
	pinned = append(pinned, buf)
	return p
}

// keep holds what the last export returned until the host has read it.
var keep []any

// retArea is where results returned by pointer are laid out (at most 12 bytes: an option of a
// string).
var retArea [4]uint32

func ptr32(p unsafe.Pointer) uint32 { return uint32(uintptr(p)) }

// stringPtr is the address of a string's bytes (not necessarily NUL-terminated).
func stringPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

// ReturnString lays out `s` as an export's string result and returns the pointer the export must
// return.
func ReturnString(s string) unsafe.Pointer {
	keep = []any{s}
	retArea[0] = ptr32(stringPtr(s))
	retArea[1] = uint32(len(s))
	return unsafe.Pointer(&retArea)
}

// ReturnBytes lays out `b` as an export's list<u8> result.
func ReturnBytes(b []byte) unsafe.Pointer {
	keep = []any{b}
	retArea[0] = ptr32(unsafe.Pointer(unsafe.SliceData(b)))
	retArea[1] = uint32(len(b))
	return unsafe.Pointer(&retArea)
}

// ReturnOptionString lays out `some(s)` as an export's option<string> result.
func ReturnOptionString(s string) unsafe.Pointer {
	keep = []any{s}
	retArea[0] = 1
	retArea[1] = ptr32(stringPtr(s))
	retArea[2] = uint32(len(s))
	return unsafe.Pointer(&retArea)
}

// ReturnNone lays out `none` as an export's option<_> result.
func ReturnNone() unsafe.Pointer {
	retArea = [4]uint32{}
	return unsafe.Pointer(&retArea)
}

// Bytes is a list<u8> parameter, given as its (pointer, length), as a []byte.
func Bytes(ptr unsafe.Pointer, length uint32) []byte {
	if length == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(ptr), length)
}

// liftString copies the string the host wrote at (ptr, len).
func liftString(ptr, length uint32) string {
	if length == 0 {
		return ""
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), length))
}

// liftBytes copies the list<u8> the host wrote at (ptr, len).
func liftBytes(ptr, length uint32) []byte {
	b := make([]byte, length)
	if length > 0 {
		copy(b, unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), length))
	}
	return b
}

// Strings is a list<string> parameter, given as its (pointer, count), as a []string (copies).
func Strings(ptr unsafe.Pointer, count uint32) []string {
	if count == 0 {
		return nil
	}
	items := unsafe.Slice((*[2]uint32)(ptr), count)
	out := make([]string, count)
	for i, item := range items {
		out[i] = liftString(item[0], item[1])
	}
	return out
}

// ReturnStrings lays out `items` as an export's list<string> result.
func ReturnStrings(items []string) unsafe.Pointer {
	pairs := make([][2]uint32, len(items))
	for i, s := range items {
		pairs[i] = [2]uint32{ptr32(stringPtr(s)), uint32(len(s))}
	}
	keep = []any{items, pairs}
	retArea[0] = ptr32(unsafe.Pointer(unsafe.SliceData(pairs)))
	retArea[1] = uint32(len(items))
	return unsafe.Pointer(&retArea)
}
