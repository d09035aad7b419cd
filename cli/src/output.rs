//! How results are printed: a line of text, or JSON with `--json`.

use cascade_core::{DeliveryState, Message, UserId};

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

/// Prints a message in a conversation's history: the message it answers
/// above it, then `<message id> [<state>] <sender>: <text>` (marked if
/// edited, or if it mentions `me`), then its reactions.
pub fn print_history_line(m: &Message, me: &UserId) {
    if m.kind == cascade_core::content::SYSTEM_KIND {
        println!("— {}", text_of(m));
        return;
    }
    if let Some(q) = &m.reply_to {
        println!("    ↪ {}", quote_of(q));
    }
    let edited = if m.edited_at.is_some() && m.deleted_by.is_none() {
        " (edited)"
    } else {
        ""
    };
    let disappears = m
        .expires_at
        .map(|at| format!(" (disappears {})", time(at)))
        .unwrap_or_default();
    let read = match m.read_by {
        0 => String::new(),
        n => format!(", read by {n}"),
    };
    let mentioned = if m.mentions(me) {
        " (mentions you)"
    } else {
        ""
    };
    println!(
        "{} [{}{read}] {}: {}{edited}{mentioned}{disappears}",
        m.id,
        format_state(m),
        m.sender,
        text_of(m)
    );
    if !m.reactions.is_empty() {
        let shown: Vec<String> = m
            .reactions
            .iter()
            .map(|r| {
                let who: Vec<&str> = r.users.iter().map(|u| u.as_str()).collect();
                format!("{} {} ({})", r.emoji, r.users.len(), who.join(", "))
            })
            .collect();
        println!("    {}", shown.join("   "));
    }
}

/// What a reply shows of the message it answers.
pub fn quote_of(q: &cascade_core::Quote) -> String {
    match (&q.sender, &q.text) {
        _ if q.deleted => "a deleted message".into(),
        (Some(sender), Some(text)) => {
            let short: String = text.chars().take(60).collect();
            let more = if short.len() < text.len() { "…" } else { "" };
            format!("{sender}: {short}{more}")
        }
        (Some(sender), None) => format!("{sender}: a message that cannot be shown"),
        (None, _) => "a message not on this device".into(),
    }
}

/// The message's text, or what stands in for a deleted one or a kind this
/// build cannot show.
pub fn text_of(m: &Message) -> String {
    if let Some(by) = &m.deleted_by {
        return format!("[deleted by {by}]");
    }
    if let Some(a) = &m.attachment {
        let caption = m.text.as_deref().filter(|t| !t.is_empty());
        return format!(
            "[file {} ({}, {} bytes)]{}",
            a.name,
            a.media_type,
            a.size,
            caption.map(|c| format!(" {c}")).unwrap_or_default()
        );
    }
    m.text
        .clone()
        .unwrap_or_else(|| format!("[unsupported message: {}]", m.kind))
}

/// A time (milliseconds since the Unix epoch) as RFC 3339, in UTC.
pub fn time(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn format_state(m: &Message) -> &'static str {
    match m.state {
        DeliveryState::Failed => "FAILED",
        other => other.as_str(),
    }
}
