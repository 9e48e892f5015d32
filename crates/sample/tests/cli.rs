//! The `sample` binary end to end on a small random model with GPT-2's real tokenizer.

use burn::{backend::NdArray, prelude::Backend};
use clap::Parser;
use gpt2::{hf, Gpt2Config};
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

fn tokenizer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/tokenizers/gpt2/tokenizer.json")
}

/// A 2-layer, 32-wide model over GPT-2's vocabulary (always the same weights), saved with its
/// tokenizer.
fn random_model(dir: &Path) -> PathBuf {
    <NdArray<f32> as Backend>::seed(&Default::default(), 7);
    let config = Gpt2Config::new(50257, 128, 32, 2, 4);
    let model = config.init::<NdArray<f32>>(&Default::default());
    let out = dir.join("model");
    hf::save(&model, &config, &out, Some(&tokenizer())).unwrap();
    out
}

fn sample(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sample")).args(args).output().unwrap()
}

fn records(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn writes_jsonl_and_text_reproducibly_and_honours_stop_strings() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let model = model.to_str().unwrap();
    let out = dir.path().join("samples.jsonl");
    let txt = dir.path().join("samples.txt");
    let args = [
        "--model",
        model,
        "--prompt",
        "JOKE:",
        "--prompt",
        "Why did",
        "--num-samples",
        "3",
        "--max-new-tokens",
        "8",
        "--top-k",
        "40",
        "--seed",
        "5",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
        "--txt",
        txt.to_str().unwrap(),
    ];
    let run = sample(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let first = records(&out);
    assert_eq!(first.len(), 6);
    for record in &first {
        assert!(["JOKE:", "Why did"].contains(&record["prompt"].as_str().unwrap()));
        assert_eq!(record["finish"], "length");
        assert_eq!(record["tokens"].as_array().unwrap().len(), 8);
        assert_eq!((record["top_k"].as_u64(), record["seed"].as_u64()), (Some(40), Some(5)));
    }
    let texts = fs::read_to_string(&txt).unwrap();
    assert!(texts.contains(first[0]["text"].as_str().unwrap().trim()));

    // The same inputs again: nothing to do; forced: the same samples.
    let again = sample(&args);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));
    let mut forced = args.to_vec();
    forced.push("--force");
    let again = sample(&forced);
    assert!(again.status.success() && !String::from_utf8_lossy(&again.stdout).contains("up to date"));
    assert_eq!(records(&out), first, "same seed, same backend: same samples");

    // Stop inside a sample's text: it must end just before that text. (One sample alone, so
    // that no other row's batch changes its arithmetic.)
    let single = [
        "--model",
        model,
        "--prompt",
        "JOKE:",
        "--max-new-tokens",
        "8",
        "--top-k",
        "40",
        "--seed",
        "9",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ];
    assert!(sample(&single).status.success());
    let text = records(&out)[0]["text"].as_str().unwrap().to_string();
    let stop: String = text.chars().skip(text.chars().count() / 2).take(2).collect();
    let mut stopped_args = single.to_vec();
    stopped_args.extend(["--stop", &stop]);
    assert!(sample(&stopped_args).status.success());
    let stopped = &records(&out)[0];
    assert_eq!(stopped["finish"], "stop", "stop {stop:?} in {text:?}: {stopped}");
    let cut = stopped["text"].as_str().unwrap();
    assert!(text.starts_with(cut) && !cut.contains(&stop), "{cut:?} vs {text:?} stop {stop:?}");
}

#[test]
fn against_marks_samples_that_recite_training_jokes() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let long_joke = "My grandfather said that the best way to remember your wife's birthday is to forget it once, \
                     and after that you will never forget it again for as long as you both shall live, he said.";
    let corpus = dir.path().join("jokes.txt");
    fs::write(&corpus, format!("{long_joke}\n\nA short one.\n\nAnother short one.\n")).unwrap();
    let data = dir.path().join("prepared");
    let args = prepare::cli::Cli::try_parse_from([
        "prepare".to_string(),
        format!("--source={}", corpus.display()),
        format!("--out={}", data.display()),
        format!("--tokenizer={}", tokenizer().display()),
        "--val-fraction=0".to_string(),
    ])
    .unwrap()
    .args;
    prepare::build::run(&args).unwrap();

    let out = dir.path().join("s.jsonl");
    let run = sample(&[
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        &format!("JOKE: {long_joke}"),
        "--prompt",
        "JOKE:",
        "--max-new-tokens",
        "4",
        "--against",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let samples = records(&out);
    assert_eq!(samples[0]["recited"], "long_run");
    assert!(samples[1]["recited"].is_null());
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(stdout.contains("recited: 1 of 2 samples (50.0%)"), "{stdout}");
    assert!(stdout.contains("(recited from the training data: a run of 32 or more tokens)"), "{stdout}");
}

#[test]
fn bad_input_is_named() {
    let missing = sample(&["--model", "/no/such/model", "--prompt", "x"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/model"));

    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let no_prompt = sample(&["--model", model.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&no_prompt.stderr).contains("no prompt"));

    let small = dir.path().join("small");
    let config = Gpt2Config::new(1000, 16, 8, 1, 2).with_eos_token_id(999);
    hf::save(&config.init::<NdArray<f32>>(&Default::default()), &config, &small, Some(&tokenizer())).unwrap();
    let mismatch = sample(&["--model", small.to_str().unwrap(), "--prompt", "x"]);
    let stderr = String::from_utf8_lossy(&mismatch.stderr);
    assert!(stderr.contains("50257 tokens") && stderr.contains("1000"), "{stderr}");

    // bf16 on the CPU backend, which has no bf16 tensors.
    let bf16 = sample(&["--model", model.to_str().unwrap(), "--prompt", "x", "--device", "cpu", "--precision", "bf16"]);
    assert_eq!(bf16.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bf16.stderr);
    assert!(stderr.contains("--precision bf16 needs a CUDA device"), "{stderr}");

    let help = String::from_utf8(sample(&["--help"]).stdout).unwrap();
    for flag in [
        "--model",
        "--tokenizer",
        "--prompt",
        "--prompts-file",
        "--num-samples",
        "--max-new-tokens",
        "--stop",
        "--greedy",
        "--temperature",
        "--top-k",
        "--top-p",
        "--repetition-penalty",
        "--first-top-k",
        "--first-tokens",
        "--seed",
        "--out",
        "--txt",
        "--device",
        "--precision",
        "--against",
        "--pipeline",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn settings_transformers_refuses_are_refused() {
    for (flag, value) in [
        ("--temperature", "-1"),
        ("--temperature", "NaN"),
        ("--temperature", "0"),
        ("--top-p", "0"),
        ("--top-p", "-0.5"),
        ("--top-p", "1.5"),
        ("--top-p", "NaN"),
        ("--repetition-penalty", "0"),
        ("--repetition-penalty", "-2"),
        ("--repetition-penalty", "NaN"),
        ("--stop", ""),
        ("--max-new-tokens", "0"),
        ("--num-samples", "2000000"),
    ] {
        let output = sample(&["--model", "m", "--prompt", "x", &format!("{flag}={value}")]);
        assert_eq!(output.status.code(), Some(2), "{flag} {value:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{flag} {value:?}: {stderr}");
    }
}

#[test]
fn a_stop_inside_a_token_cuts_there_and_the_terminal_shows_the_file_s_text() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let out = dir.path().join("s.jsonl");
    let args = [
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "JOKE:",
        "--max-new-tokens",
        "12",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
        "--force",
    ];
    assert!(sample(&args).status.success());
    let whole = &records(&out)[0];
    let text = whole["text"].as_str().unwrap().to_string();
    // A stop text that starts after a token's first byte, where no earlier copy of it is.
    let tokenizer = tokenizers::Tokenizer::from_file(tokenizer()).unwrap();
    let ids: Vec<u32> = whole["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    let starts: Vec<usize> = (0..ids.len()).map(|n| tokenizer.decode(&ids[..n], false).unwrap().len()).collect();
    let cut = (1..text.len() - 2)
        .find(|&at| {
            !starts.contains(&at)
                && text.is_char_boundary(at)
                && text.is_char_boundary(at + 2)
                && text.find(&text[at..at + 2]) == Some(at)
        })
        .expect("a token of more than one byte");
    let stop = &text[cut..cut + 2];

    let mut stopped = args.to_vec();
    stopped.extend(["--stop", stop]);
    let output = sample(&stopped);
    assert!(output.status.success());
    let record = &records(&out)[0];
    assert_eq!(record["finish"], "stop");
    assert_eq!(record["text"].as_str().unwrap(), &text[..cut], "stop {stop:?} in {text:?}");
    let terminal = String::from_utf8(output.stdout).unwrap();
    assert!(terminal.contains(&format!("=== JOKE:\n{}\n", &text[..cut])), "{terminal:?} vs {:?}", &text[..cut]);
}

#[test]
fn long_prompts_keep_their_end_and_a_bom_is_not_prompt_text() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let prompts = dir.path().join("prompts.txt");
    // The model has 128 positions; the second prompt has 400 tokens.
    fs::write(&prompts, format!("\u{feff}JOKE:\n{}\n", "word ".repeat(400))).unwrap();
    let out = dir.path().join("s.jsonl");
    let output = sample(&[
        "--model",
        model.to_str().unwrap(),
        "--prompts-file",
        prompts.to_str().unwrap(),
        "--max-new-tokens",
        "4",
        "--num-samples",
        "70",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("tokens but the model reads at most 128: continuing its last 124 tokens"), "{stderr}");
    let samples = records(&out);
    assert_eq!(samples.len(), 140, "70 samples a prompt, decoded in batches");
    assert_eq!(samples[0]["prompt"], "JOKE:");
    assert!(samples.iter().all(|s| !s["tokens"].as_array().unwrap().is_empty()));
    // The pace line counts every token chosen: each sample's, and its end-of-text if it chose one.
    let chosen: usize =
        samples.iter().map(|s| s["tokens"].as_array().unwrap().len() + usize::from(s["finish"] == "eos")).sum();
    assert!(stderr.contains(&format!("sample: {chosen} tokens in ")), "{stderr}");
    assert!(stderr.contains("tokens/s); first tokens") && stderr.contains("(the mean of 4 batches)"), "{stderr}");
}

#[test]
fn samples_longer_than_the_model_reads_end_there_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let out = dir.path().join("s.jsonl");
    let output = sample(&[
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "JOKE:",
        "--max-new-tokens",
        "500",
        "--greedy",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // "JOKE:" is three tokens of the model's 128 positions.
    let notice = "notice: the model reads at most 128 positions, so samples of the prompt \"JOKE:\" end after 125 new \
                  tokens (finish \"length\"), not --max-new-tokens 500";
    assert!(stderr.contains(notice), "{stderr}");
    let [sample] = <[_; 1]>::try_from(records(&out)).unwrap();
    assert!(sample["tokens"].as_array().unwrap().len() <= 125);
}

#[test]
fn outputs_that_sample_did_not_write_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let model = model.to_str().unwrap();
    let notes = dir.path().join("notes.txt");
    fs::write(&notes, "mine\n").unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["--model", model, "--prompt", "x", "--max-new-tokens", "2", "--device", "cpu"];
        args.extend(extra);
        sample(&args)
    };
    let notes_path = notes.to_str().unwrap();
    for (flags, message) in [
        (vec!["--out", notes_path], "holds something other than samples"),
        (vec!["--txt", notes_path], "pass --force to replace it"),
        (vec!["--prompts-file", notes_path, "--txt", notes_path, "--force"], "is also an input"),
        (vec!["--out", dir.path().to_str().unwrap()], "is a directory"),
    ] {
        let output = run(&flags);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
        assert_eq!(fs::read_to_string(&notes).unwrap(), "mine\n");
    }
    assert!(run(&["--txt", notes_path, "--force"]).status.success());
    assert_ne!(fs::read_to_string(&notes).unwrap(), "mine\n");
}
