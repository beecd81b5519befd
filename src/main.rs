//! The `rota` binary: parses the command line, sets up logging, runs the
//! command, prints the error chain and picks the exit code (0 done, 1 error,
//! 2 usage, 3 a server stopped because consensus was lost).

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = rota::cli::Cli::parse();
    match rota::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("rota: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::exit(1);
        }
    }
}
