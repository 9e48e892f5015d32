use clap::Parser;
use sample::{cli::Cli, run::run};

// Each decoding step allocates and frees the logits and attention buffers (MBs each); glibc's
// malloc returns such blocks to the kernel each time and takes them back with page faults.
// mimalloc keeps them (the generation bench runs with it too).
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
