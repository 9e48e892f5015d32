use clap::Parser;
use sample::{cli::Cli, run::run};

// Every step allocates and frees tensors of up to hundreds of MB; glibc's malloc returns such
// blocks to the kernel each time, and the page faults of taking them back took half of a
// CPU training step. mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let result = pipeline::stage_argv("sample", std::env::args_os().collect()).map(Cli::parse_from).and_then(|cli| {
        let outcome = run(&cli)?;
        if outcome.up_to_date {
            let out = cli.out.as_deref().expect("only --out can be up to date").display();
            println!("sample: {out} is up to date (the same flags, prompts, model and tokenizer): nothing to do");
        }
        Ok(())
    });
    if let Err(error) = result {
        eprintln!("sample: error: {error:#}");
        std::process::exit(1);
    }
}
