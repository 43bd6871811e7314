//! {{name}}: a Hypergraph task in Rust (see README.md).

hypergraph_guest::wit_bindgen::generate!({
    world: "local:{{name}}/{{name}}",
    // The host's WIT (vendored by `hypergraph new`), then this crate's own world.
    path: [".hypergraph/wit", "wit"],
    features: ["clocks-timezone"],
    with: {
        "hypergraph:task/log@0.1.0": hypergraph_guest::bindings::log,
        "hypergraph:task/context@0.1.0": hypergraph_guest::bindings::context,
        "hypergraph:task/kv@0.1.0": hypergraph_guest::bindings::kv,
{{#workflow}}
        "hypergraph:workflow/workflow@0.1.0": hypergraph_guest::bindings::workflow,
{{/workflow}}
    },
    generate_all,
    runtime_path: "hypergraph_guest::wit_bindgen::rt",
});

struct Task;

impl Guest for Task {
    fn greet(name: String) -> String {
        hypergraph_guest::info!(
            "greeting {name} (attempt {})",
            hypergraph_guest::context::attempt()
        );
        println!("Hello, {name}!"); // stdout lines become log lines of the run
        format!("Hello, {name}!")
    }
{{#workflow}}

    fn greet_all(names: Vec<String>) -> Vec<String> {
        use hypergraph_guest::workflow;
        // Children are tasks of this deployment: `<deployment>/greet`.
        let task = hypergraph_guest::context::task_name();
        let deployment = task.split('/').next().unwrap_or_default();
        let children = workflow::start_all(&format!("{deployment}/greet"), names.iter())
            .expect("children start");
        workflow::join::<String>(&children)
            .into_iter()
            .map(|greeting| greeting.expect("child succeeded"))
            .collect()
    }
{{/workflow}}
}

export!(Task);
