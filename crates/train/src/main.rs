use clap::{CommandFactory, Parser};
use std::{ffi::OsString, sync::atomic::Ordering};
use train::{
    cli::{Cli, Command},
    training::{self, STOP_REQUESTED},
};

// Every step allocates and frees tensors of up to hundreds of MB; glibc's malloc returns such
// blocks to the kernel each time, and the page faults of taking them back took half of a
// CPU training step. mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status of a run stopped by Ctrl-C (after saving a checkpoint), as shells report SIGINT.
const INTERRUPTED: i32 = 130;

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // A pipeline's [train] table holds a training run's flags, not a subcommand's.
    let subcommand = argv.get(1).is_some_and(|arg| Cli::command().find_subcommand(arg).is_some());
    let cli = match subcommand {
        true => Cli::parse_from(argv),
        false => match pipeline::stage_argv("train", argv) {
            Ok(argv) => Cli::parse_from(argv),
            Err(error) => fail(error),
        },
    };
    match &cli.command {
        Some(Command::Eval(args)) => {
            if cli.pipeline.is_some() {
                fail(anyhow::anyhow!("train eval reads no pipeline file: give --model and --data"));
            }
            if let Err(error) = train::evaluate::run(args) {
                fail(error);
            }
        }
        Some(Command::Export(args)) => match train::export::run(args, cli.pipeline.as_deref()) {
            Ok(exported) => println!("model (Hugging Face layout): {}", exported.display()),
            Err(error) => fail(error),
        },
        None => {
            ctrlc::set_handler(|| {
                if STOP_REQUESTED.swap(true, Ordering::SeqCst) {
                    eprintln!("\ntrain: stopping now, without a checkpoint");
                    std::process::exit(INTERRUPTED);
                }
                eprintln!("\ntrain: stop requested (Ctrl-C or SIGTERM): saving a checkpoint after this step (Ctrl-C again to stop at once)");
            })
            .expect("installing the Ctrl-C and SIGTERM handler");
            match training::train(&cli.args) {
                Ok(summary) if summary.up_to_date => {
                    let out = summary.run_dir.display();
                    println!("train: {out} is up to date (a finished run with the same flags, data and initial weights): nothing to do");
                }
                Ok(summary) => {
                    let out = summary.run_dir.display();
                    if summary.exported.is_none() {
                        eprintln!(
                            "train: stopped at step {} of {}; checkpoint {}; continue with the same flags and --resume",
                            summary.steps,
                            summary.total_steps,
                            summary.checkpoint.display()
                        );
                        std::process::exit(INTERRUPTED);
                    }
                    match summary.loss {
                        Some(loss) => println!("trained {} steps; last training loss {loss:.4}", summary.steps),
                        // Resumed after its last step: only the evaluation and export were left.
                        None => println!("trained {} steps (the last ones in an earlier run)", summary.steps),
                    }
                    if let Some(v) = summary.validation {
                        println!("validation loss {:.4}, perplexity {:.2} ({} tokens)", v.loss, v.perplexity, v.tokens);
                    }
                    println!("model (Hugging Face layout): {out}/final");
                    println!("metrics: {out}/metrics.jsonl, plot: {out}/loss.png, run: {out}/run.json, checkpoints: {out}/checkpoints");
                }
                Err(error) => fail(error),
            }
        }
    }
}

fn fail(error: anyhow::Error) -> ! {
    eprintln!("train: error: {error:#}");
    std::process::exit(1);
}
