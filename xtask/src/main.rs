//! `cargo xtask <command>`: the project's build and test entry points.
//!
//! One binary, std only: every step is a `cargo` or tool invocation printed before it
//! runs, so a failure names the exact command to re-run.

mod steps;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  run [ptcheck run args]   build what is needed, then run the built-in plans
                           (default: --backend auto --config all)
  test                     unit tests, then every built-in plan on every available backend
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let outcome = match cmd.as_str() {
        "run" => steps::run(&rest),
        "test" => steps::test(),
        "help" | "--help" | "-h" | "" => {
            print!("{USAGE}");
            return if cmd.is_empty() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
        other => Err(format!("unknown command '{other}'\n{USAGE}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
