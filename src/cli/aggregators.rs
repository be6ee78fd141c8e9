//! `kumo aggregators …`: demand-response aggregators, principals of their
//! own that only an administrator creates (the REST API cannot).
//!
//! Only wiring: the logic is `kumo_bridge::demand::principal`.

use clap::Subcommand;
use kumo_bridge::demand::principal;

use super::accounts::{pool, Target};
use crate::settings::Settings;

/// `kumo aggregators …`
#[derive(Debug, Subcommand)]
pub enum AggregatorsCommand {
    /// Create an aggregator; prints its id, and its token once.
    Create {
        /// Display name (shown to users next to its programs).
        #[arg(long)]
        name: String,
    },
    /// Issue another token for an aggregator; printed once.
    Token {
        /// The aggregator's id.
        id: String,
    },
}

pub async fn run(
    command: AggregatorsCommand,
    target: Target,
    settings: Settings,
) -> anyhow::Result<()> {
    let (db, pool) = pool(&settings, target).await?;
    let result = match command {
        AggregatorsCommand::Create { name } => {
            principal::create(&pool, &name).await.map(|(id, token)| {
                eprintln!("created aggregator {id}; its token, shown only once:");
                println!("{token}");
            })
        }
        AggregatorsCommand::Token { id } => {
            principal::create_token(&pool, &id).await.map(|token| {
                eprintln!("token for aggregator {id}; shown only once:");
                println!("{token}");
            })
        }
    }
    .map_err(anyhow::Error::from);
    drop(pool);
    db.close().await;
    result
}
