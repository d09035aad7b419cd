//! `cascade directory`: colleagues in the own and trusted organisations.

use std::time::Duration;

use anyhow::Result;
use cascade_core::Client;

/// Searches the directory. Best effort: the relay if it answers in time
/// (at most 5 seconds), the local cache otherwise.
pub async fn search(client: &Client, query: &str, json: bool, timeout: Duration) -> Result<()> {
    let _ = client.sync(timeout.min(Duration::from_secs(5))).await;
    let people = client.search_directory(query).await?;
    if json {
        println!("{}", serde_json::to_string(&people)?);
    } else {
        for p in people {
            println!(
                "{}\t{}\t{}\t[{}]",
                p.display_name, p.role, p.user_id, p.org_id
            );
        }
    }
    Ok(())
}
