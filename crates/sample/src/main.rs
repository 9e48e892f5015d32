use clap::Parser;
use sample::{cli::Cli, run::run};

fn main() {
    let result = pipeline::stage_argv("sample", std::env::args_os().collect())
        .map(Cli::parse_from)
        .and_then(|cli| run(&cli));
    if let Err(error) = result {
        eprintln!("sample: error: {error:#}");
        std::process::exit(1);
    }
}
