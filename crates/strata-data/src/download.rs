//! Downloading a data set from its official address into the cache, with MD5
//! verification.
//!
//! Files are fetched into a hidden temporary folder beside the destination and
//! checked against their published MD5 sums; only when every file is good is the
//! folder renamed to `<cache>/<name>`. Any failure — a network error, a short
//! body, a wrong checksum, a bad archive — removes the temporary folder, so no
//! partial data set is ever left behind.
//!
//! `http://` addresses (Fashion-MNIST's official one, a local mirror) are fetched
//! by a small HTTP/1.0 client over `std::net`. `https://` addresses (MNIST's and
//! CIFAR-10's) need the `https` feature of this crate, which brings in `ureq` with
//! rustls; without it the error says where to put hand-downloaded files.

use crate::error::{DataError, Result};
use flate2::read::GzDecoder;
use md5::{Digest, Md5};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a remote data set is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Files kept as they are downloaded (the gzipped IDX files of MNIST).
    Files,
    /// One `.tar.gz` archive whose `*.bin` and `*.txt` members are extracted flat
    /// (the CIFAR-10 binary release).
    TarGz,
}

/// Where a data set can be downloaded from, and the MD5 sum of each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The data set name, also the name of its folder in the cache.
    pub name: String,
    /// The address the file names are appended to (ends with `/`).
    pub base_url: String,
    /// Each file name with its MD5 sum (lower-case hex).
    pub files: Vec<(String, String)>,
    /// How the files are packed.
    pub packing: Packing,
}

impl Remote {
    /// The same files fetched from another base address (a mirror).
    pub fn with_base_url(mut self, base_url: &str) -> Remote {
        self.base_url = if base_url.ends_with('/') {
            base_url.to_string()
        } else {
            format!("{base_url}/")
        };
        self
    }
}

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(f, m)| (f.to_string(), m.to_string()))
        .collect()
}

/// The official address and checksums of a known data set (`mnist`,
/// `fashion-mnist`, `cifar10`), or `None`.
pub fn official_remote(name: &str) -> Option<Remote> {
    let (base_url, list, packing): (&str, &[(&str, &str)], Packing) = match name {
        "mnist" => (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            &[
                (
                    "train-images-idx3-ubyte.gz",
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "9fb629c4189551a2d022fa330f9573f3",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
            ],
            Packing::Files,
        ),
        "fashion-mnist" => (
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            &[
                (
                    "train-images-idx3-ubyte.gz",
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "25c81989df183df01b3e8a0aad5dffbe",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "bef4ecab320f06d8554ea6380940ec79",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            ],
            Packing::Files,
        ),
        "cifar10" => (
            "https://www.cs.toronto.edu/~kriz/",
            &[("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")],
            Packing::TarGz,
        ),
        _ => return None,
    };
    Some(Remote {
        name: name.to_string(),
        base_url: base_url.to_string(),
        files: files(list),
        packing,
    })
}

/// Downloads `remote` into `cache_root/<name>` and returns that folder.
///
/// Refuses to replace an existing folder. Every file must match its MD5 sum;
/// on any error nothing is left in `cache_root` but what was there before.
pub fn download(remote: &Remote, cache_root: &Path) -> Result<PathBuf> {
    let dest = cache_root.join(&remote.name);
    if dest.exists() {
        return Err(DataError::format(
            &dest,
            "already exists: not replaced by a download",
        ));
    }
    std::fs::create_dir_all(cache_root).map_err(|e| DataError::io(cache_root, e))?;
    let tmp = cache_root.join(format!(".{}.partial-{}", remote.name, std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let result = fetch_all(remote, &tmp)
        .and_then(|()| std::fs::rename(&tmp, &dest).map_err(|e| DataError::io(&dest, e)));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| dest)
}

fn fetch_all(remote: &Remote, tmp: &Path) -> Result<()> {
    for (file, md5) in &remote.files {
        let url = format!("{}{}", remote.base_url, file);
        let path = tmp.join(file);
        fetch_verified(&url, &path, md5)?;
        if remote.packing == Packing::TarGz {
            extract_tar_gz(&path, tmp)?;
            std::fs::remove_file(&path).map_err(|e| DataError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Fetches `url` into `path`, checking its MD5 sum; a file that does not match is
/// removed and reported as [`DataError::Checksum`].
pub fn fetch_verified(url: &str, path: &Path, md5_hex: &str) -> Result<()> {
    let result = fetch_to(url, path).and_then(|found| {
        if found.eq_ignore_ascii_case(md5_hex) {
            Ok(())
        } else {
            Err(DataError::Checksum {
                url: url.to_string(),
                expected: md5_hex.to_lowercase(),
                found,
            })
        }
    });
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn dl_err(url: &str, message: impl Into<String>) -> DataError {
    DataError::Download {
        url: url.to_string(),
        message: message.into(),
    }
}

/// Streams the body of `url` into `path`; returns its MD5 sum in hex.
fn fetch_to(url: &str, path: &Path) -> Result<String> {
    let (mut body, len) = open_url(url)?;
    let mut file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let k = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(dl_err(url, format!("after {total} bytes: {e}"))),
        };
        hasher.update(&buf[..k]);
        file.write_all(&buf[..k])
            .map_err(|e| DataError::io(path, e))?;
        total += k as u64;
    }
    if let Some(len) = len {
        if total != len {
            return Err(dl_err(
                url,
                format!("expected {len} bytes (Content-Length), received {total}"),
            ));
        }
    }
    file.sync_all().map_err(|e| DataError::io(path, e))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The body of `url` and its length, if announced.
fn open_url(url: &str) -> Result<(Box<dyn Read>, Option<u64>)> {
    #[cfg(feature = "https")]
    if url.starts_with("https://") {
        let resp = ureq::get(url)
            .call()
            .map_err(|e| dl_err(url, e.to_string()))?;
        let len = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        return Ok((Box::new(resp.into_body().into_reader()), len));
    }
    let (r, len) = http_get(url, 5)?;
    Ok((Box::new(r), len))
}

/// A minimal HTTP/1.0 GET: the body reader and its Content-Length, if given.
fn http_get(url: &str, redirects: u32) -> Result<(BufReader<TcpStream>, Option<u64>)> {
    let rest = match url.strip_prefix("http://") {
        Some(r) => r,
        None if url.starts_with("https://") => {
            return Err(dl_err(
                url,
                "https needs TLS, which this build of strata-data does not include \
                 (enable its `https` feature), or download the files by hand into the cache folder",
            ))
        }
        None => return Err(dl_err(url, "expected an http:// address")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| dl_err(url, format!("bad port `{p}`")))?,
        ),
        None => (authority, 80),
    };
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| dl_err(url, format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(15)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = stream.ok_or_else(|| {
        dl_err(
            url,
            format!(
                "cannot connect to {authority}: {}",
                last.map_or("no address".to_string(), |e| e.to_string())
            ),
        )
    })?;
    let io = |e: std::io::Error| dl_err(url, e.to_string());
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: strata-data\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut r = BufReader::new(stream);
    let mut status = String::new();
    (&mut r).take(8192).read_line(&mut status).map_err(io)?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| dl_err(url, format!("bad HTTP status line `{}`", status.trim())))?;
    let mut len = None;
    let mut location = None;
    for _ in 0..200 {
        let mut line = String::new();
        (&mut r).take(8192).read_line(&mut line).map_err(io)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.parse::<u64>().ok(),
                "location" => location = Some(v.to_string()),
                "transfer-encoding" if !v.eq_ignore_ascii_case("identity") => {
                    return Err(dl_err(url, format!("unsupported Transfer-Encoding {v}")))
                }
                _ => {}
            }
        }
    }
    match code {
        200 => Ok((r, len)),
        301 | 302 | 303 | 307 | 308 if redirects > 0 => {
            let loc =
                location.ok_or_else(|| dl_err(url, format!("HTTP {code} without Location")))?;
            let next = if loc.starts_with('/') {
                format!("http://{authority}{loc}")
            } else {
                loc
            };
            http_get(&next, redirects - 1)
        }
        _ => Err(dl_err(url, format!("HTTP status {}", status.trim()))),
    }
}

/// Parses an octal tar header field.
fn octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// Extracts the regular `*.bin` and `*.txt` members of a `.tar.gz` archive into
/// `dir`, by file name only (folders in member names are dropped, so no member
/// can land outside `dir`).
pub fn extract_tar_gz(archive: &Path, dir: &Path) -> Result<()> {
    let f = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut r = GzDecoder::new(BufReader::new(f));
    let io = |e| DataError::io(archive, e);
    let mut header = [0u8; 512];
    let mut offset = 0u64;
    loop {
        if r.read_exact(&mut header).is_err() {
            return Err(DataError::format(
                archive,
                format!("tar archive ends inside a header at byte {offset}"),
            ));
        }
        offset += 512;
        if header.iter().all(|&b| b == 0) {
            return Ok(());
        }
        let size = octal(&header[124..136]).ok_or_else(|| {
            DataError::format(
                archive,
                format!("bad tar member size at byte {}", offset - 512),
            )
        })?;
        let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..name_end]).into_owned();
        let base = name.rsplit('/').next().unwrap_or("").to_string();
        let regular = matches!(header[156], b'0' | 0);
        let wanted =
            regular && (base.ends_with(".bin") || base.ends_with(".txt")) && !base.starts_with('.');
        let padded = size.div_ceil(512) * 512;
        let mut member = (&mut r).take(size);
        let copied = if wanted {
            let out = dir.join(&base);
            let mut w = File::create(&out).map_err(|e| DataError::io(&out, e))?;
            std::io::copy(&mut member, &mut w).map_err(io)?
        } else {
            std::io::copy(&mut member, &mut std::io::sink()).map_err(io)?
        };
        if copied != size {
            return Err(DataError::Truncated {
                path: archive.into(),
                expected: offset + size,
                found: offset + copied,
            });
        }
        std::io::copy(&mut (&mut r).take(padded - size), &mut std::io::sink()).map_err(io)?;
        offset += padded;
    }
}
