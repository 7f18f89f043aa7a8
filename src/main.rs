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
            docclass::logging::error(&format!("{error:#}"));
            let locked = error.downcast_ref::<docclass::unattended::Locked>().is_some();
            let outcome = if locked { docclass::commands::Outcome::Locked } else { docclass::commands::Outcome::Fatal };
            outcome.exit_code()
        }
    }
}
