//! Example task: strings in, strings out.
//!
//! Logs a line through the Hypergraph SDK and prints one to stdout (the host turns stdout lines
//! into log lines of the attempt).

hypergraph_guest::wit_bindgen::generate!({
    world: "hypergraph-examples:greet/greet",
    path: ["../../wit", "wit"],
    features: ["clocks-timezone"],
    with: {
        "hypergraph:task/log@0.1.0": hypergraph_guest::bindings::log,
        "hypergraph:task/context@0.1.0": hypergraph_guest::bindings::context,
    },
    generate_all,
    runtime_path: "hypergraph_guest::wit_bindgen::rt",
});

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        let name = name.trim();
        let name = if name.is_empty() { "world" } else { name };
        hypergraph_guest::info!(
            "greeting {name} (task {}, attempt {})",
            hypergraph_guest::context::task_name(),
            hypergraph_guest::context::attempt()
        );
        let greeting = format!("Hello, {name}!");
        println!("{greeting}");
        greeting
    }

    fn shout(text: String, times: u8) -> String {
        let times = times.min(10);
        if times == 0 {
            hypergraph_guest::log::warn("shout called with times = 0");
        }
        format!("{}{}", text.to_uppercase(), "!".repeat(usize::from(times)))
    }
}

export!(Greeter);
