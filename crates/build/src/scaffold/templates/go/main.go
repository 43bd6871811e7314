// {{name}}: a Hypergraph task in Go (see README.md).
package main

import (
	"fmt"
{{#workflow}}
	"strings"
{{/workflow}}
	"unsafe"

	hg "hypergraph.local/guest"
{{#workflow}}
	"hypergraph.local/guest/workflow"
{{/workflow}}
)

// export greet: func(name: string) -> string;
//
//go:wasmexport greet
func greet(name string) unsafe.Pointer {
	hg.Infof("greeting %s (attempt %d)", name, hg.Attempt())
	greeting := "Hello, " + name + "!"
	fmt.Println(greeting) // stdout lines become log lines of the run
	return hg.ReturnString(greeting)
}
{{#workflow}}

// export greet-all: func(names: list<string>) -> list<string>;
//
//go:wasmexport greet-all
func greetAll(names unsafe.Pointer, count uint32) unsafe.Pointer {
	// Children are tasks of this deployment: `<deployment>/greet`.
	task := hg.TaskName()
	task = task[:strings.Index(task, "/")] + "/greet"
	var children []uint32
	for _, name := range hg.Strings(names, count) {
		child, err := workflow.Start(task, name)
		if err != nil {
			panic(err)
		}
		children = append(children, child)
	}
	var greetings []string
	for _, result := range workflow.Join(children...) {
		var greeting string
		if err := result.Decode(&greeting); err != nil {
			panic(err)
		}
		greetings = append(greetings, greeting)
	}
	return hg.ReturnStrings(greetings)
}
{{/workflow}}

// A Go task is a reactor: main never runs, each export is called in a fresh instance.
func main() {}
