#include "textflag.h"

// func growMemory(pages int32) int32: the wasm instruction memory.grow, as Go's runtime has it
// (runtime·growMemory in runtime/sys_wasm.s).
TEXT ·growMemory(SB), NOSPLIT, $0-12
	Get SP
	I32Load pages+0(FP)
	GrowMemory
	I32Store ret+8(FP)
	RET
