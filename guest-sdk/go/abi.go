// Package hypergraph is the Go SDK of Hypergraph tasks: log, context, key-value, outbound HTTP and
// the workflow calls, over hand-written bindings of the host's WIT (the component model's
// canonical ABI, by //go:wasmimport), plus the helpers an export needs to take and return strings
// and lists.
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
// that is a string, a list, an option or a result is returned through a pointer (ReturnString,
// ReturnBytes, ReturnOptionString, ReturnNone, ReturnResult). Every run gets a fresh instance, so
// package-level variables hold their initial values on every run, and memory is never reused
// across runs.
package hypergraph

import "unsafe"

// hostNext and hostEnd bound the free part of the block cabi_realloc hands out from: memory the
// host writes strings and lists into, which is never freed (an instance lives for one run).
var hostNext, hostEnd uintptr

// growMemory is the wasm instruction memory.grow (memory_wasm.s): the old size in 64 KiB pages,
// or -1.
func growMemory(pages int32) int32

// cabiRealloc is the allocator the host writes strings and lists into (canonical ABI realloc).
//
// The host calls it while it lowers a host call's result, when the guest may not call any import.
// Go's own allocator may (growing its heap reads the clock through WASI, which traps with "cannot
// leave component instance"), so this one never allocates from Go's heap: it hands out memory from
// pages it grows itself with memory.grow. Go's heap skips memory grown by others (the runtime
// overlay of `hypergraph build`), and its collector ignores pointers outside its heap.
//
//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, newSize uint32) unsafe.Pointer {
	if newSize == 0 {
		return unsafe.Pointer(uintptr(align))
	}
	p := (hostNext + uintptr(align) - 1) &^ (uintptr(align) - 1)
	if hostNext == 0 || p+uintptr(newSize) > hostEnd {
		pages := max((newSize+0xffff)>>16, 1)
		start := growMemory(int32(pages))
		if start < 0 {
			panic("cabi_realloc: out of memory")
		}
		p = uintptr(start) << 16 // page-aligned
		hostEnd = p + uintptr(pages)<<16
	}
	hostNext = p + uintptr(newSize)
	if old != nil && oldSize > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(p)), newSize), unsafe.Slice((*byte)(old), min(oldSize, newSize)))
	}
	return unsafe.Pointer(p)
}

// keep holds what the last export returned until the host has read it.
var keep []any

// retArea is where results returned by pointer are laid out (at most 12 bytes: an option or a
// result of a string).
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

// ReturnResult lays out an export's result<string, string>: ok(value) when err is nil, else
// err(err.Error()). The layout is option<string>'s: a u8 discriminant (0 = ok, 1 = err) and the
// string's pointer and length at +4 and +8.
func ReturnResult(value string, err error) unsafe.Pointer {
	if err != nil {
		value = err.Error()
	}
	keep = []any{value}
	retArea[0] = 0
	if err != nil {
		retArea[0] = 1
	}
	retArea[1] = ptr32(stringPtr(value))
	retArea[2] = uint32(len(value))
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
