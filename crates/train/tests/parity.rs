//! The train stage against the reference: `scripts/fixtures/train_parity.py` trains the same tiny
//! model on the same rows with transformers + torch.optim.AdamW.

mod common;

use common::*;
use train::metrics::{self, Line};

#[test]
fn matches_pytorch_step_for_step() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("run"));
    write_dataset(&data);
    let summary = train::training::train(&train_args(&parity_args(&data, &out, &[]))).unwrap();
    let expected = expected();
    let reference = expected["steps"].as_array().unwrap();
    assert_eq!(summary.steps as usize, reference.len());

    let steps: Vec<_> = metrics::read(&out.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|l| if let Line::Step(s) = l { Some(s) } else { None })
        .collect();
    assert_eq!(steps.len(), reference.len());
    for (ours, theirs) in steps.iter().zip(reference) {
        let relative = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
        let loss = theirs["loss"].as_f64().unwrap();
        assert!(relative(ours.loss, loss) <= 1e-4, "step {}: loss {} vs transformers {loss}", ours.step, ours.loss);
        let lr = theirs["lr"].as_f64().unwrap();
        assert!((ours.lr - lr).abs() <= 1e-12, "step {}: lr {} vs {lr}", ours.step, ours.lr);
        let norm = theirs["grad_norm"].as_f64().unwrap();
        assert!(relative(ours.grad_norm, norm) <= 1e-3, "step {}: grad norm {} vs {norm}", ours.step, ours.grad_norm);
    }

    let validation = summary.validation.unwrap();
    let reference_val = expected["val_loss"].as_f64().unwrap();
    assert!(
        (validation.loss - reference_val).abs() / reference_val <= 1e-4,
        "validation loss {} vs {reference_val}",
        validation.loss
    );

    let ours = without_key_bias(tensors(&out.join("final/model.safetensors")));
    let theirs = without_key_bias(tensors(&fixtures().join("final/model.safetensors")));
    let difference = max_abs_difference(&ours, &theirs);
    assert!(difference <= 1e-4, "final weights differ by up to {difference}");
}

#[test]
fn eval_gives_the_reference_validation_loss() {
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path());
    let args = train::cli::EvalArgs {
        model: fixtures().join("final").display().to_string(),
        data: dir.path().into(),
        split: "val".into(),
        micro_batch: 3,
        doc_mask: false,
        device: stage::device::DeviceChoice::Cpu,
    };
    let evaluation = train::evaluate::run(&args).unwrap();
    let reference = expected()["val_loss"].as_f64().unwrap();
    assert!((evaluation.loss - reference).abs() / reference <= 1e-5, "{} vs {reference}", evaluation.loss);
    assert!((evaluation.perplexity - reference.exp()).abs() / reference.exp() <= 1e-4);
}
