use anyhow::Result;
use clap::Parser;
use prepare::{
    build,
    cli::{Cli, Command},
    inspect,
};
use std::io::{stdout, BufWriter, Write};

fn main() {
    if let Err(error) = run() {
        eprintln!("prepare: error: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse_from(pipeline::stage_argv("prepare", std::env::args_os().collect())?);
    let mut out = BufWriter::new(stdout().lock());
    match cli.command {
        Some(Command::Inspect { dir, rows }) => inspect::inspect(&dir, rows, &mut out)?,
        Some(Command::Dump { dir, split, docs: true, .. }) => inspect::dump_docs(&dir, &split, &mut out)?,
        Some(Command::Dump { dir, split, .. }) => inspect::dump_rows(&dir, &split, &mut out)?,
        None => {
            let outcome = build::run(&cli.args)?;
            let m = &outcome.manifest;
            let verb = if outcome.up_to_date { "up to date" } else { "wrote" };
            writeln!(out, "{verb}: {} (lineage {})", cli.args.out().display(), &m.lineage[..16])?;
            for (name, split) in &m.splits {
                writeln!(
                    out,
                    "  {name:<5} {:>8} jokes {:>8} rows {:>10} tokens  fill {:.1}%  {} shard(s)",
                    split.documents,
                    split.rows,
                    split.tokens,
                    split.fill * 100.0,
                    split.shards.len()
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
