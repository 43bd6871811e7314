module hypergraph-tests/go-guarantees

go 1.24
