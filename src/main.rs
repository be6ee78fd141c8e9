//! The `kumo` binary: parses the command line, loads settings, sets up tracing and
//! hands over to the component the user asked for. No logic lives here.

mod cli;
mod config_doc;
mod data_lock;
mod database;
mod logging;
mod settings;

use clap::Parser;

/// mimalloc, not glibc's malloc: every role of this binary allocates and frees
/// per message (readings, sessions, handshakes), and glibc's consolidation of
/// its free lists took half the bridge's CPU at fleet rates.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kumo: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
