fn main() {
    hypergraph::cli::main()
}
