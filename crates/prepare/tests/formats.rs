//! Format readers on small project-written files: quoting, BOM, CRLF, unicode, missing fields.

use prepare::formats::{read, Fields, Format, RawJoke, SourceCounts};
use std::path::Path;

fn fields() -> Fields {
    Fields { text_column: None, text_field: "text".into(), delimiter: None }
}

fn read_all(path: &Path, format: Format, fields: &Fields) -> anyhow::Result<(u64, Vec<RawJoke>)> {
    read_counted(path, format, fields).map(|(counts, jokes)| (counts.records, jokes))
}

fn read_counted(path: &Path, format: Format, fields: &Fields) -> anyhow::Result<(SourceCounts, Vec<RawJoke>)> {
    let mut jokes = Vec::new();
    let counts = read(path, format, fields, &mut |j| jokes.push(j))?;
    Ok((counts, jokes))
}

fn texts(jokes: &[RawJoke]) -> Vec<&str> {
    jokes.iter().map(|j| j.text.as_str()).collect()
}

fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn csv_handles_bom_crlf_quotes_and_unicode() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "jokes.csv",
        "\u{feff}\"ID\",\"Joke\"\r\n1,\"He said \"\"hi\"\", then left, quickly.\"\r\n2,\"Two\r\nlines\"\r\n3,Café ☕ joke\r\n".as_bytes(),
    );
    assert_eq!(Format::detect(&path).unwrap(), Format::Csv);
    let (count, jokes) = read_all(&path, Format::Csv, &fields()).unwrap();
    assert_eq!(count, 3);
    let texts: Vec<&str> = jokes.iter().map(|j| j.text.as_str()).collect();
    assert_eq!(texts, ["He said \"hi\", then left, quickly.", "Two\r\nlines", "Café ☕ joke"]);
}

#[test]
fn tsv_is_tab_separated_and_delimiter_chooses() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = file(&dir, "jokes.tsv", b"ID\tJoke\n1\tKnock, knock.\n2\t\"Who, is \"\"there\"\"?\"\n");
    assert_eq!(Format::detect(&tsv).unwrap(), Format::Csv);
    let (_, jokes) = read_all(&tsv, Format::Csv, &fields()).unwrap();
    assert_eq!(texts(&jokes), ["Knock, knock.", "Who, is \"there\"?"]);
    let semicolons = file(&dir, "jokes.csv", b"ID;Joke\n1;Knock, knock.\n");
    let error = format!("{:#}", read_all(&semicolons, Format::Csv, &fields()).unwrap_err());
    assert!(error.contains("--delimiter"), "{error}");
    let chosen = Fields { delimiter: Some(b';'), ..fields() };
    assert_eq!(texts(&read_all(&semicolons, Format::Csv, &chosen).unwrap().1), ["Knock, knock."]);
}

#[test]
fn a_stray_quote_is_counted_as_malformed_not_merged_into_a_joke() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        "jokes.csv",
        b"ID,Joke\n1,good one\n2,\"unterminated quote\n3,\"fine\"\n4,\"last, \"\"quoted\"\"\"\n",
    );
    let (counts, jokes) = read_counted(&path, Format::Csv, &fields()).unwrap();
    assert_eq!(texts(&jokes), ["good one", "last, \"quoted\""]);
    assert_eq!(counts, SourceCounts { records: 3, malformed: 1, first_malformed_line: Some(3) });
}

#[test]
fn csv_column_choice_and_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "q.csv", b"id,setup,punchline\n1,Why?,Because.\n");
    let error = format!("{:#}", read_all(&path, Format::Csv, &fields()).unwrap_err());
    assert!(
        error.contains("no column named `Joke`") && error.contains("setup, punchline") && error.contains("q.csv"),
        "{error}"
    );
    let chosen = Fields { text_column: Some("PUNCHLINE".into()), ..fields() };
    assert_eq!(read_all(&path, Format::Csv, &chosen).unwrap().1[0].text, "Because.");
    let ragged = file(&dir, "r.csv", b"ID,Joke\n1,fine\n2\n");
    assert!(read_all(&ragged, Format::Csv, &fields()).is_err());
}

#[test]
fn taivop_reddit_joins_title_and_body_without_repeating() {
    let dir = tempfile::tempdir().unwrap();
    let json = r#"[
      {"title": "Why did the chicken cross the road?", "body": "To get to the other side.", "id": "a", "score": 12},
      {"title": "A man walks into a bar", "body": "A man walks into a bar and says ouch.", "id": "b", "score": 1},
      {"title": "Title only", "body": "", "id": "c", "score": 0},
      {"body": "Stupidstuff style, body only", "category": "Misc", "id": 4, "rating": 3.5},
      {"title": "Ünïcödé ✓", "body": null, "score": 2.0}
    ]"#;
    let path = file(&dir, "reddit_jokes.json", json.as_bytes());
    assert_eq!(Format::detect(&path).unwrap(), Format::TaivopJson);
    let (count, jokes) = read_all(&path, Format::TaivopJson, &fields()).unwrap();
    assert_eq!(count, 5);
    let texts: Vec<&str> = jokes.iter().map(|j| j.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Why did the chicken cross the road?\nTo get to the other side.",
            "A man walks into a bar and says ouch.",
            "Title only",
            "Stupidstuff style, body only",
            "Ünïcödé ✓"
        ]
    );
    let scores: Vec<Option<f64>> = jokes.iter().map(|j| j.score).collect();
    assert_eq!(scores, [Some(12.0), Some(1.0), Some(0.0), None, Some(2.0)]);
}

#[test]
fn taivop_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = file(&dir, "m.json", br#"[{"body": "ok"}, {"id": 2}]"#);
    let error = format!("{:#}", read_all(&missing, Format::TaivopJson, &fields()).unwrap_err());
    assert!(error.contains("record 1 has neither `title` nor `body`") && error.contains("m.json"), "{error}");
    let truncated = file(&dir, "t.json", br#"[{"body": "ok"}, {"body": "cut"#);
    let error = format!("{:#}", read_all(&truncated, Format::TaivopJson, &fields()).unwrap_err());
    assert!(error.contains("t.json") && error.contains("line 1"), "{error}");
    let object = file(&dir, "o.json", br#"{"body": "not an array"}"#);
    assert!(read_all(&object, Format::TaivopJson, &fields()).is_err());
}

#[test]
fn jsonl_reads_the_named_field_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "j.jsonl", b"{\"text\": \"one\", \"score\": 5}\n\n{\"text\": \"two \xe2\x9c\x93\"}\r\n");
    let (count, jokes) = read_all(&path, Format::Jsonl, &fields()).unwrap();
    assert_eq!(count, 2);
    assert_eq!((jokes[0].text.as_str(), jokes[0].score), ("one", Some(5.0)));
    assert_eq!(jokes[1].text, "two ✓");
    let bad = file(&dir, "b.jsonl", b"{\"text\": \"ok\"}\n{\"joke\": \"wrong field\"}\n");
    let error = format!("{:#}", read_all(&bad, Format::Jsonl, &fields()).unwrap_err());
    assert!(error.contains("line 2: no field `text`"), "{error}");
    let broken = file(&dir, "c.jsonl", b"{\"text\": \"ok\"}\n{not json\n");
    let error = format!("{:#}", read_all(&broken, Format::Jsonl, &fields()).unwrap_err());
    assert!(error.contains("line 2: not valid JSON"), "{error}");
}

#[test]
fn text_splits_on_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "j.txt", b"\xef\xbb\xbfFirst joke\nsecond line\r\n\r\n  \n\nSecond joke\n\n\n");
    let (count, jokes) = read_all(&path, Format::Text, &fields()).unwrap();
    assert_eq!(count, 2);
    assert_eq!(jokes[0].text, "First joke\nsecond line\n");
    assert_eq!(jokes[1].text, "Second joke\n");
}

#[test]
fn invalid_utf8_is_an_error_not_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, "bad.txt", b"ok\n\n\xff\xfe broken\n");
    let error = format!("{:#}", read_all(&path, Format::Text, &fields()).unwrap_err());
    assert!(error.contains("bad.txt: reading as text: line 3: stream did not contain valid UTF-8"), "{error}");
}
