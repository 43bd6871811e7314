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
        "hypergraph:task/kv@0.1.0": hypergraph_guest::bindings::kv,
    },
    generate_all,
    runtime_path: "hypergraph_guest::wit_bindgen::rt",
});

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        let name = name.trim();
        let name = if name.is_empty() { "world" } else { name };
        #[cfg(feature = "breaking-change")]
        let salutation = time_of_day_salutation();
        #[cfg(not(feature = "breaking-change"))]
        let salutation = "Hello";
        hypergraph_guest::info!(
            "greeting {name} (task {}, attempt {})",
            hypergraph_guest::context::task_name(),
            hypergraph_guest::context::attempt()
        );
        let greeting = compose(salutation, name);
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

/// `"<salutation>, <name>!"`.
#[cfg(not(feature = "compatible-refactor"))]
fn compose(salutation: &str, name: &str) -> String {
    format!("{salutation}, {name}!")
}

/// The same text built another way: a refactor that changes no behaviour.
#[cfg(feature = "compatible-refactor")]
fn compose(salutation: &str, name: &str) -> String {
    let mut greeting = String::with_capacity(salutation.len() + name.len() + 3);
    for part in [salutation, ", ", name, "!"] {
        greeting.push_str(part);
    }
    greeting
}

/// "Good morning" before noon (UTC), "Good afternoon" until 18:00, else "Good evening".
#[cfg(feature = "breaking-change")]
fn time_of_day_salutation() -> &'static str {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match (seconds % 86_400) / 3_600 {
        0..=11 => "Good morning",
        12..=17 => "Good afternoon",
        _ => "Good evening",
    }
}

export!(Greeter);
