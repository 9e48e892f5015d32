//! Downloads against a local HTTP server: resume, checksum, 404, refused connection.

use fetch::{cache_name, Downloader};
use std::{
    io::{BufRead, BufReader, Write},
    net::{Shutdown, TcpListener},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

const BODY_LEN: usize = 300_000;

fn body() -> Vec<u8> {
    (0..BODY_LEN).map(|i| (i * 31 % 251) as u8).collect()
}

fn fast() -> Downloader {
    Downloader { retries: 3, backoff: Duration::from_millis(10) }
}

/// Serves `body()` at /jokes.json over plain HTTP/1.1 on loopback, honouring `Range: bytes=N-`.
/// The first `cut_first` responses promise the whole body but send only half of it, then drop
/// the connection. Records the Range header of every request for /jokes.json.
fn serve(cut_first: usize) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jokes.json", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut range = None;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("range") {
                        range = Some(value.trim().to_string());
                    }
                }
            }
            if !request_line.starts_with("GET /jokes.json ") {
                stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok();
                continue;
            }
            let served_before = {
                let mut seen = seen.lock().unwrap();
                seen.push(range.clone());
                seen.len() - 1
            };
            let start: usize =
                range.as_deref().and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()).unwrap_or(0);
            let data = body();
            let rest = &data[start..];
            let status = if start > 0 { "206 Partial Content" } else { "200 OK" };
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", rest.len());
            stream.write_all(head.as_bytes()).ok();
            let sent = if served_before < cut_first { &rest[..rest.len() / 2] } else { rest };
            stream.write_all(sent).ok();
            stream.shutdown(Shutdown::Both).ok();
        }
    });
    (url, ranges)
}

fn sha(bytes: &[u8]) -> String {
    artifact::sha256_bytes(bytes)
}

#[test]
fn downloads_verifies_and_reuses_the_cache() {
    let (url, ranges) = serve(0);
    let cache = tempfile::tempdir().unwrap();
    let path = fast().fetch(&url, cache.path(), Some(&sha(&body()))).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body());
    assert!(path.file_name().unwrap().to_string_lossy().ends_with("-jokes.json"));
    assert_eq!(fast().fetch(&url, cache.path(), None).unwrap(), path);
    assert_eq!(ranges.lock().unwrap().len(), 1, "the second fetch came from the cache");
}

#[test]
fn a_dropped_connection_resumes_with_a_range_request() {
    let (url, ranges) = serve(1);
    let cache = tempfile::tempdir().unwrap();
    let path = fast().fetch(&url, cache.path(), Some(&sha(&body()))).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body());
    let ranges = ranges.lock().unwrap();
    assert_eq!(ranges.len(), 2);
    assert_eq!(ranges[0], None);
    assert_eq!(ranges[1].as_deref(), Some(format!("bytes={}-", BODY_LEN / 2).as_str()));
}

#[test]
fn a_checksum_mismatch_fails_and_leaves_nothing_that_looks_complete() {
    let (url, _) = serve(0);
    let cache = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let error = fast().fetch(&url, cache.path(), Some(&wrong)).unwrap_err().to_string();
    assert!(error.contains("checksum mismatch") && error.contains(&url) && error.contains(&sha(&body())), "{error}");
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

#[test]
fn not_found_is_reported_without_retrying() {
    let (url, ranges) = serve(0);
    let missing = url.replace("jokes.json", "missing.json");
    let cache = tempfile::tempdir().unwrap();
    let error = fast().fetch(&missing, cache.path(), None).unwrap_err().to_string();
    assert!(error.contains("404") && error.contains(&missing), "{error}");
    assert!(ranges.lock().unwrap().is_empty());
}

#[test]
fn a_refused_connection_says_where_to_put_the_file() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/reddit_jokes.json");
    let cache = tempfile::tempdir().unwrap();
    let error = fast().fetch(&url, cache.path(), None).unwrap_err().to_string();
    assert!(error.contains(&url) && error.contains("after 4 attempts") && error.contains("offline"), "{error}");
    assert!(error.contains(&cache.path().join(cache_name(&url)).display().to_string()), "{error}");
}
