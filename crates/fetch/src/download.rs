use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

/// Downloads a URL into a cache directory, resuming partial downloads with HTTP Range requests,
/// retrying transient failures with exponential backoff, and verifying a sha256 when given.
#[derive(Debug, Clone)]
pub struct Downloader {
    /// Attempts after the first one for network errors and 5xx answers.
    pub retries: u32,
    /// Wait before the first retry; doubled for each one after.
    pub backoff: Duration,
}

impl Default for Downloader {
    fn default() -> Self {
        Self { retries: 5, backoff: Duration::from_secs(1) }
    }
}

/// Why one attempt failed, and whether trying again can help.
enum Failure {
    /// Worth another try: a dropped connection, a busy server.
    Transient(anyhow::Error),
    /// The host name does not resolve: this machine is offline (or the URL is wrong), and
    /// asking again a minute later will not change that.
    Unreachable(anyhow::Error),
    Fatal(anyhow::Error),
}

/// How a failure below HTTP (DNS, TCP, TLS) is taken.
fn transport_failure(transport: ureq::Transport) -> Failure {
    match transport.kind() {
        ureq::ErrorKind::Dns => Failure::Unreachable(transport.into()),
        _ => Failure::Transient(transport.into()),
    }
}

/// The file name a URL is cached under: its last path segment behind a short hash of the whole
/// URL, so two URLs ending in the same name do not collide.
pub fn cache_name(url: &str) -> String {
    let last = url.split(['?', '#']).next().unwrap_or(url).rsplit('/').find(|s| !s.is_empty()).unwrap_or("download");
    let tag = &artifact::sha256_bytes(url.as_bytes())[..8];
    format!("{tag}-{last}")
}

impl Downloader {
    /// The cached copy of `url` under `cache_dir`, downloading it first when it is missing (or
    /// fails `expected_sha256`). The file appears under its final name only once complete and
    /// verified; until then the bytes live in `NAME.part`, which the next call resumes.
    pub fn fetch(&self, url: &str, cache_dir: &Path, expected_sha256: Option<&str>) -> Result<PathBuf> {
        let dest = cache_dir.join(cache_name(url));
        if dest.is_file() {
            match expected_sha256 {
                None => return Ok(dest),
                Some(expected) if sha256_of(&dest)? == expected.to_lowercase() => return Ok(dest),
                Some(_) => {
                    eprintln!("{}: cached copy fails its checksum, downloading again", dest.display());
                    fs::remove_file(&dest).with_context(|| format!("removing {}", dest.display()))?;
                }
            }
        }
        fs::create_dir_all(cache_dir).with_context(|| format!("creating {}", cache_dir.display()))?;
        let part = cache_dir.join(format!("{}.part", cache_name(url)));

        let mut attempt = 0;
        loop {
            match self.attempt(url, &part) {
                Ok(()) => break,
                Err(Failure::Transient(error)) if attempt < self.retries => {
                    let wait = self.backoff * 2u32.pow(attempt);
                    eprintln!("download of {url} failed ({error:#}); retrying in {wait:?}");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err(Failure::Transient(error) | Failure::Unreachable(error)) => {
                    let tries = match attempt {
                        0 => String::new(),
                        n => format!(" after {} attempts", n + 1),
                    };
                    bail!(
                        "could not download {url}{tries}: {error:#}\n\
                         If this machine is offline, download the file on one that is online and put it at\n  {}\n\
                         (or pass its local path instead of the URL).",
                        dest.display()
                    )
                }
                Err(Failure::Fatal(error)) => return Err(error),
            }
        }

        if let Some(expected) = expected_sha256 {
            let actual = sha256_of(&part)?;
            if actual != expected.to_lowercase() {
                fs::remove_file(&part).ok();
                bail!("checksum mismatch for {url}: expected sha256 {expected}, downloaded file has {actual}");
            }
        }
        fs::rename(&part, &dest).with_context(|| format!("moving {} into place", part.display()))?;
        Ok(dest)
    }

    /// One GET, resuming from the bytes already in `part`.
    fn attempt(&self, url: &str, part: &Path) -> Result<(), Failure> {
        let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(60))
            .build();
        let mut request = agent.get(url);
        if have > 0 {
            request = request.set("Range", &format!("bytes={have}-"));
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(ureq::Error::Status(416, _)) => {
                // The partial file is not a prefix the server can continue: start over.
                fs::remove_file(part).ok();
                return Err(Failure::Transient(anyhow!("server refused to resume; restarting")));
            }
            Err(ureq::Error::Status(code, response)) if code >= 500 || code == 429 => {
                return Err(Failure::Transient(anyhow!("HTTP {code} {}", response.status_text())))
            }
            Err(ureq::Error::Status(code, response)) => {
                return Err(Failure::Fatal(anyhow!("HTTP {code} {} for {url}", response.status_text())))
            }
            Err(ureq::Error::Transport(transport)) => return Err(transport_failure(transport)),
        };
        let resumed = response.status() == 206;
        let remaining: Option<u64> = response.header("Content-Length").and_then(|v| v.parse().ok());
        let start = if resumed { have } else { 0 };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(part)
            .map_err(|e| Failure::Fatal(anyhow!("opening {}: {e}", part.display())))?;

        let bar = ProgressBar::new(remaining.map_or(0, |r| r + start));
        bar.set_style(
            ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("valid template"),
        );
        bar.set_message(cache_name(url));
        bar.set_position(start);
        let copied = copy_with_progress(&mut response.into_reader(), &mut file, &bar);
        bar.finish_and_clear();
        file.flush().and_then(|()| file.sync_all()).map_err(|e| Failure::Fatal(e.into()))?;
        let copied = copied.map_err(|e| Failure::Transient(anyhow!("connection lost mid-download: {e}")))?;
        if let Some(expected) = remaining {
            if copied != expected {
                return Err(Failure::Transient(anyhow!("got {copied} of {expected} bytes")));
            }
        }
        Ok(())
    }
}

fn copy_with_progress(reader: &mut impl Read, writer: &mut File, bar: &ProgressBar) -> io::Result<u64> {
    let mut buffer = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            return Ok(total);
        }
        writer.write_all(&buffer[..n])?;
        total += n as u64;
        bar.inc(n as u64);
    }
}

fn sha256_of(path: &Path) -> Result<String> {
    artifact::sha256_file(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_does_not_resolve_is_not_retried() {
        // A resolver that finds nothing, as one does offline: no packet leaves the machine.
        let agent = ureq::AgentBuilder::new()
            .resolver(|_: &str| -> io::Result<Vec<std::net::SocketAddr>> { Err(io::Error::other("no such host")) })
            .build();
        let Err(ureq::Error::Transport(transport)) = agent.get("http://jokes.example/jokes.json").call() else {
            panic!("the request should fail below HTTP")
        };
        assert!(matches!(transport_failure(transport), Failure::Unreachable(_)));
    }
}
