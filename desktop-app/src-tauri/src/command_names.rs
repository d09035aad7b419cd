/// Every command the UI may invoke; `build.rs` makes an `allow-…`
/// permission for each and the window's capability lists them.
pub const COMMANDS: &[&str] = &[
    "status",
    "enrol",
    "unlock",
    "lock_now",
    "input",
    "conversations",
    "history",
    "send_message",
    "retry_message",
    "mark_read",
    "create_conversation",
    "add_members",
    "remove_member",
    "leave_conversation",
    "members",
    "search_directory",
    "devices",
    "safety_number",
    "get_settings",
    "set_settings",
];
