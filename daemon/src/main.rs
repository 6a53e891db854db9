//! `leash`: the daemon and its command line in one executable (flash is scarce).

use std::process::ExitCode;

use leash::cli;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leash: {e:#}");
            ExitCode::from(1)
        }
    }
}

