//! Builds the Tauri context and one permission per app command, so the
//! window's capability can allow exactly the commands the UI calls.

fn main() {
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(
        tauri_build::AppManifest::new().commands(cascade_desktop_commands::COMMANDS),
    ))
    .expect("tauri build step");
}

mod cascade_desktop_commands {
    include!("src/command_names.rs");
}
