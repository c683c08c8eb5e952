//! `bellhop-cli`: the smoke-test client. Wiring only; the client is the `cli` library.

use std::io::IsTerminal;

use clap::Parser;
use cli::Args;
use shared::config::Config;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let code = match Config::from_env_with_dev_defaults() {
        Ok(config) => {
            let prompt = std::io::stdin().is_terminal();
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            cli::run(&args, &config, stdin, tokio::io::stdout(), tokio::io::stderr(), prompt).await
        }
        Err(error) => {
            eprintln!("error: read configuration: {error}");
            cli::EXIT_USAGE
        }
    };
    // Exit here rather than return: tokio's stdin reads on a thread that cannot be cancelled, and returning would
    // wait for it, that is for the user to press Enter, when the hub closed the connection under the prompt.
    std::process::exit(i32::from(code));
}
