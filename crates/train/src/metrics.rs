//! `RUN/metrics.jsonl`: one line per optimizer step, written and flushed as the step ends, and
//! one line per evaluation marked `"eval": true`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepMetrics {
    pub step: u64,
    /// Token-mean loss over all of the step's rows.
    pub loss: f64,
    /// The learning rate this step's update used.
    pub lr: f64,
    /// Global gradient L2 norm before clipping.
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
    /// The most device memory the allocator has held at a step's end in this process, in MiB:
    /// its tensors, padding and the free pages its pools keep (PyTorch's
    /// `max_memory_reserved`). Absent on the CPU, which does not count it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_reserved_mib: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalMetrics {
    pub step: u64,
    pub eval: bool,
    /// Token-mean loss over the validation split.
    pub loss: f64,
    pub perplexity: f64,
}

/// A line of metrics.jsonl.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Line {
    Eval(EvalMetrics),
    Step(StepMetrics),
}

impl Line {
    pub fn step(&self) -> u64 {
        match self {
            Line::Eval(e) => e.step,
            Line::Step(s) => s.step,
        }
    }
}

pub struct MetricsLog {
    path: PathBuf,
    file: File,
    /// The step of the latest evaluation line in the file.
    last_eval: Option<u64>,
}

impl MetricsLog {
    /// Open `path` for appending, first dropping lines past `kept_steps`: a resumed run redoes
    /// those steps and writes them again.
    pub fn open(path: &Path, kept_steps: u64) -> Result<Self> {
        let kept: Vec<Line> = read(path)?.into_iter().filter(|line| line.step() <= kept_steps).collect();
        let text: String = kept.iter().map(|line| to_json(line) + "\n").collect();
        artifact::write_atomically(path, text)?;
        let last_eval = kept.iter().rev().find(|line| matches!(line, Line::Eval(_))).map(Line::step);
        let file = OpenOptions::new().append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { path: path.into(), file, last_eval })
    }

    pub fn write_step(&mut self, line: &StepMetrics) -> Result<()> {
        self.write(line)
    }

    /// Write an evaluation line, unless the file has one for this step already (a run resumed
    /// from its last checkpoint, killed after its final evaluation).
    pub fn write_eval(&mut self, line: &EvalMetrics) -> Result<()> {
        if self.last_eval == Some(line.step) {
            return Ok(());
        }
        self.last_eval = Some(line.step);
        self.write(line)
    }

    fn write(&mut self, line: &impl Serialize) -> Result<()> {
        let text = serde_json::to_string(line)?;
        writeln!(self.file, "{text}")
            .and_then(|_| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

fn to_json(line: &Line) -> String {
    match line {
        Line::Eval(e) => serde_json::to_string(e),
        Line::Step(s) => serde_json::to_string(s),
    }
    .expect("metrics serialise")
}

/// Every line of a metrics file (none if it does not exist).
pub fn read(path: &Path) -> Result<Vec<Line>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut lines = Vec::new();
    for (number, text) in BufReader::new(file).lines().enumerate() {
        let text = text.with_context(|| format!("reading {}", path.display()))?;
        if text.trim().is_empty() {
            continue;
        }
        // A line cut short by a killed process is the only one that can fail; it is redone.
        match serde_json::from_str(&text) {
            Ok(line) => lines.push(line),
            Err(_) => eprintln!("notice: {}:{}: dropping an unfinished line", path.display(), number + 1),
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_memory_is_left_out_where_nothing_counts_it() {
        // Lines of CPU runs, and of runs from before the field, have none; both read back.
        let text = r#"{"step":1,"loss":2.5,"lr":0.001,"grad_norm":1.0,"tokens_per_s":10.0,"elapsed_s":1.0}"#;
        let Line::Step(step) = serde_json::from_str(text).unwrap() else { panic!("a step line") };
        assert_eq!(step.device_reserved_mib, None);
        assert_eq!(serde_json::to_string(&step).unwrap(), text);
        let on_gpu = StepMetrics { device_reserved_mib: Some(512.5), ..step };
        let written = serde_json::to_string(&on_gpu).unwrap();
        assert!(written.ends_with(r#","device_reserved_mib":512.5}"#), "{written}");
        assert_eq!(serde_json::from_str::<Line>(&written).unwrap(), Line::Step(on_gpu));
    }
}
