module hypergraph.local/guest

go 1.24
