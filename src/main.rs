use std::process::ExitCode;

use clap::Parser;

// Encoder batches allocate and free large buffers per layer; mimalloc keeps those pages
// instead of returning them to the OS and faulting them in again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
