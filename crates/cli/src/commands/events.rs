//! `hypergraph events send`.

use anyhow::Result;
use serde_json::json;

use crate::args::SendEventArgs;
use crate::capabilities::workflow::{validate_event_name, MAX_EVENT_PAYLOAD_BYTES};
use crate::io::{print_json, read_json_arg};
use crate::limits::{format_bytes, json_len};
use crate::Hypergraph;

/// `hypergraph events send <name> [--payload <json>]`.
pub(crate) async fn send(hg: &Hypergraph, args: SendEventArgs) -> Result<i32> {
    let (name, as_json) = (args.name.as_str(), args.json.json);
    let payload = args
        .payload
        .map(|text| read_json_arg(&text, "--payload"))
        .transpose()?;
    let payload = payload.as_ref();
    validate_event_name(name)?;
    let payload = payload.unwrap_or(&serde_json::Value::Null);
    let size = json_len(payload);
    anyhow::ensure!(
        size <= MAX_EVENT_PAYLOAD_BYTES,
        "the payload of event `{name}` is {}, larger than the limit of {}",
        format_bytes(size),
        format_bytes(MAX_EVENT_PAYLOAD_BYTES)
    );
    let (seq, woken) = hg.store.send_event(name, &payload.to_string()).await?;
    if as_json {
        print_json(&json!({ "event": name, "seq": seq, "woken": woken }));
    } else {
        outln!("sent event `{name}` (#{seq}); {woken} waiting workflow(s) woken");
    }
    Ok(0)
}
