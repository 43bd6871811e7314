// Copyright 2023 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

// Hypergraph's overlay of Go 1.27's runtime/mem_wasm.go (`hypergraph build` passes it, with
// mem_sbrk.go beside it, to `go build -overlay`; see host/src/builder/go.rs). What changes: Go's
// heap no longer assumes that it alone grows linear memory. In a component, the WASI preview-1
// adapter allocates its state with memory.grow, at the top of memory, possibly before Go's heap
// is initialized; Go's sbrk used to grow memory by what its own bookkeeping said was missing and
// hand out the pages from its old break, so Go and the adapter would have shared a page.
// skipForeign moves the break above memory grown by someone else (keeping the free pages below it
// on the free list), and sbrk and every section of mem_sbrk.go that reads the break call it
// first.

package runtime

import "unsafe"

// skipForeign moves the break above linear memory Go did not grow itself.
//
// memlock must be held (or the runtime not yet started).
func skipForeign() {
	top := uintptr(currentMemory()) * physPageSize
	if top <= blocMax {
		return
	}
	if bloc < blocMax {
		// Pages Go grew but has not handed out: keep them on the free list.
		memFree(unsafe.Pointer(bloc), blocMax-bloc)
	}
	bloc = top
	blocMax = top
}

func sbrk(n uintptr) unsafe.Pointer {
	skipForeign()
	bl := bloc
	n = memRound(n)
	if bl+n > blocMax {
		grow := (bl + n - blocMax) / physPageSize
		size := growMemory(int32(grow))
		if size < 0 {
			return nil
		}
		resetMemoryDataView()
		blocMax = bl + n
	}
	bloc += n
	return unsafe.Pointer(bl)
}

// Implemented in src/runtime/sys_wasm.s
func growMemory(pages int32) int32
func currentMemory() int32
