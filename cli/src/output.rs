//! How results are printed: a line of text, or JSON with `--json`.

use cascade_core::{DeliveryState, Message};

/// Prints `value` as JSON, or the text `text` makes.
pub fn say(json: bool, value: serde_json::Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

/// Prints a message: one JSON object, or
/// `<conversation> [<state>] <sender>: <text>`.
pub fn print_message(json: bool, m: &Message) {
    if json {
        println!("{}", serde_json::to_string(m).expect("messages serialise"));
    } else if m.kind == cascade_core::content::SYSTEM_KIND {
        println!("{} — {}", m.group_id, text_of(m));
    } else {
        println!(
            "{} [{}] {}: {}",
            m.group_id,
            format_state(m),
            m.sender,
            text_of(m)
        );
    }
}

/// The message's text, or what stands in for a kind this build cannot show.
pub fn text_of(m: &Message) -> String {
    m.text
        .clone()
        .unwrap_or_else(|| format!("[unsupported message: {}]", m.kind))
}

fn format_state(m: &Message) -> &'static str {
    match m.state {
        DeliveryState::Failed => "FAILED",
        other => other.as_str(),
    }
}
