//! Several workers (`--devices cpu,cpu,…`) train as one does: each takes its share of a step's
//! micro-batches and the gradients are summed across them. Each run is its own process, as a
//! user's is: burn's collective is one per process.

mod common;

use common::*;
use std::path::Path;
use train::metrics::Line;

/// The reference run's flags with `devices` in place of `--device cpu`, plus `extra`.
fn args_on(devices: &str, data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut argv = parity_args(data, out, extra);
    let at = argv.iter().position(|a| a == "--device").expect("parity_args names a device");
    argv.splice(at..at + 2, ["--devices".to_string(), devices.to_string()]);
    argv
}

fn train(argv: &[String]) {
    let output = train_bin(argv).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn step_losses(run: &Path) -> Vec<(u64, f64)> {
    let lines = train::metrics::read(&run.join("metrics.jsonl")).unwrap();
    lines
        .into_iter()
        .filter_map(|line| match line {
            Line::Step(step) => Some((step.step, step.loss)),
            Line::Eval(_) => None,
        })
        .collect()
}

fn assert_same_losses(what: &str, actual: &[(u64, f64)], expected: &[(u64, f64)]) {
    assert_eq!(actual.len(), expected.len(), "{what}: steps");
    for ((step, a), (_, e)) in actual.iter().zip(expected) {
        assert!((a - e).abs() <= 1e-6 * e.abs(), "{what}, step {step}: loss {a} against {e}");
    }
}

/// The largest difference between the final weights of two runs, relative to the largest
/// weight: within 1e-6 when they computed the same steps.
fn weights_difference(run: &Path, reference: &Path) -> f32 {
    let load = |run: &Path| without_key_bias(tensors(&run.join("final/model.safetensors")));
    let (weights, reference) = (load(run), load(reference));
    let largest = reference.values().flatten().fold(0.0f32, |largest, w| largest.max(w.abs()));
    max_abs_difference(&weights, &reference) / largest
}

#[test]
fn two_and_three_workers_train_as_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data);
    // 3 micro-batches a step: 2 workers take 2 and 1, 3 workers one each.
    let one = dir.path().join("one");
    train(&parity_args(&data, &one, &[]));
    let expected = step_losses(&one);
    assert_eq!(expected.len(), 20);
    for devices in ["cpu,cpu", "cpu,cpu,cpu"] {
        let out = dir.path().join(devices);
        train(&args_on(devices, &data, &out, &[]));
        assert_same_losses(devices, &step_losses(&out), &expected);
        // Sums in another order round differently (1.9e-7 of the largest weight, observed).
        let difference = weights_difference(&out, &one);
        assert!(difference <= 1e-6, "{devices}: final weights differ from one worker's by {difference}");
    }
}

#[test]
fn random_initial_weights_are_drawn_once_for_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data);
    // burn draws random weights lazily: replicas copied before the draw would each draw their
    // own, and the run would end in "the replicas diverged".
    let config = tiny_model().join("config.json");
    let init = format!("random:{}", config.display());
    let flags = ["--init", init.as_str(), "--max-steps", "3"];
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    train(&parity_args(&data, &one, &flags));
    train(&args_on("cpu,cpu", &data, &two, &flags));
    assert_same_losses("random weights, 2 workers", &step_losses(&two), &step_losses(&one));
}

#[test]
fn a_micro_batch_draws_the_same_dropout_masks_on_any_worker() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data);
    let flags = ["--dropout", "0.1", "--max-steps", "5"];
    let (without, one, two) = (dir.path().join("without"), dir.path().join("one"), dir.path().join("two"));
    train(&parity_args(&data, &without, &["--max-steps", "5"]));
    train(&parity_args(&data, &one, &flags));
    train(&args_on("cpu,cpu", &data, &two, &flags));
    let (without, one) = (step_losses(&without), step_losses(&one));
    assert!(without.iter().zip(&one).all(|(a, b)| a.1 != b.1), "dropout changed no step's loss: {one:?}");
    assert_same_losses("dropout, 2 workers", &step_losses(&two), &one);
}

#[test]
fn a_run_resumes_on_another_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data);
    // Shuffled and with dropout: the row order and the masks must resume too.
    let flags = ["--epochs", "8", "--save-every", "10", "--seed", "5", "--dropout", "0.1"];
    let shuffled = |mut argv: Vec<String>| {
        argv.retain(|a| a != "--no-shuffle");
        argv
    };
    let whole = dir.path().join("whole");
    train(&shuffled(parity_args(&data, &whole, &flags)));

    let resumed = dir.path().join("resumed");
    kill_at_a_checkpoint(&shuffled(args_on("cpu,cpu", &data, &resumed, &flags)), &resumed);

    let mut argv = shuffled(args_on("cpu,cpu,cpu", &data, &resumed, &flags));
    argv.push("--resume".into());
    let output = train_bin(&argv).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("resuming from"));
    assert_same_losses("resumed on 3 workers", &step_losses(&resumed), &step_losses(&whole));
    let difference = weights_difference(&resumed, &whole);
    assert!(difference <= 1e-6, "the resumed run's weights differ from one worker's by {difference}");
}

#[test]
fn splits_that_cannot_work_are_refused_before_the_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset(&data);
    let refused = |argv: Vec<String>| {
        let out = Path::new(&argv[argv.iter().position(|a| a == "--out").unwrap() + 1]).to_path_buf();
        let output = train_bin(&argv).output().unwrap();
        assert!(!output.status.success());
        assert!(!out.exists(), "a refused run wrote {}", out.display());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let out = dir.path().join("run");
    let idle = refused(args_on("cpu,cpu,cpu,cpu", &data, &out, &[]));
    assert!(idle.contains("--grad-accum 3 with 4 devices: a step has 3 micro-batches"), "{idle}");
    let mut one_each_step = args_on("cpu,cpu", &data, &out, &[]);
    let grad_accum = one_each_step.iter().position(|a| a == "--grad-accum").expect("parity_args names it");
    one_each_step[grad_accum + 1] = "1".to_string();
    let single = refused(one_each_step);
    assert!(single.contains("--grad-accum 1 with 2 devices: a step has 1 micro-batch, so"), "{single}");
    let mixed = refused(args_on("cpu,auto", &data, &out, &[]));
    assert!(mixed.contains("--devices cpu,auto: list the devices themselves"), "{mixed}");
    let both = refused(args_on("cpu,cpu", &data, &out, &["--device", "cpu"]));
    assert!(both.contains("cannot be used with"), "{both}");
}
