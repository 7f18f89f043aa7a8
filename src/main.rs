use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = docclass::cli::Cli::parse();
    match docclass::commands::run(cli) {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => {
            eprintln!("docclass: error: {error:#}");
            docclass::commands::Outcome::Fatal.exit_code()
        }
    }
}
