//! Downloading against a small HTTP server on 127.0.0.1 serving a temporary folder.

mod common;

use common::{write_mnist_like, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_data::*;

/// Serves the files of a folder over HTTP/1.0 on 127.0.0.1 until dropped (or for
/// 60 s at most). `/redirect/<f>` answers 302 to `/<f>`; `/short/<f>` promises
/// more bytes than it sends.
struct Server {
    base: String,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(root: PathBuf) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let _ = serve_one(s, &root);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Server {
            base,
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve_one(s: std::net::TcpStream, root: &Path) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut request = String::new();
    r.read_line(&mut request)?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut w = s;
    if let Some(f) = path.strip_prefix("/redirect/") {
        return write!(w, "HTTP/1.0 302 Found\r\nLocation: /{f}\r\n\r\n");
    }
    let (short, name) = match path.strip_prefix("/short/") {
        Some(f) => (true, f.to_string()),
        None => (false, path.trim_start_matches('/').to_string()),
    };
    match std::fs::read(root.join(&name)) {
        Ok(body) => {
            let len = body.len() + if short { 100 } else { 0 };
            write!(w, "HTTP/1.0 200 OK\r\nContent-Length: {len}\r\n\r\n")?;
            w.write_all(&body)
        }
        Err(_) => write!(w, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    }
}

fn md5_of(path: &Path) -> String {
    use md5::{Digest, Md5};
    Md5::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

fn mnist_remote(served: &Path, base: &str) -> Remote {
    Remote {
        name: "mnist".into(),
        base_url: base.into(),
        files: IDX_FILES
            .iter()
            .map(|f| (f.to_string(), md5_of(&served.join(f))))
            .collect(),
        packing: Packing::Files,
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn downloads_and_verifies_idx_files() {
    let served = TempDir::new("dl-served");
    write_mnist_like(served.path(), 6, 2, 3, 3, true);
    let server = Server::start(served.path().into());
    let cache = TempDir::new("dl-cache");
    let remote = mnist_remote(served.path(), &server.base);

    let dir = download(&remote, cache.path()).unwrap();
    assert_eq!(dir, cache.join("mnist"));
    assert_eq!(entries(cache.path()), vec!["mnist"]);
    let d = load_mnist_like(&dir).unwrap();
    assert_eq!(d.train.shape(), [6, 1, 3, 3]);
    // Not downloaded twice over an existing folder.
    assert!(download(&remote, cache.path()).is_err());

    // Through a redirect.
    let cache2 = TempDir::new("dl-cache2");
    let r = remote
        .clone()
        .with_base_url(&format!("{}redirect", server.base));
    download(&r, cache2.path()).unwrap();
    assert_eq!(entries(&cache2.join("mnist")).len(), 4);
}

#[test]
fn wrong_checksum_leaves_nothing_behind() {
    let served = TempDir::new("dl-served");
    write_mnist_like(served.path(), 6, 2, 3, 3, true);
    let server = Server::start(served.path().into());
    let cache = TempDir::new("dl-cache");
    let mut remote = mnist_remote(served.path(), &server.base);
    remote.files[2].1 = "0123456789abcdef0123456789abcdef".into();
    let e = download(&remote, cache.path()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::Checksum { .. }), "{msg}");
    assert!(
        msg.contains("t10k-images-idx3-ubyte.gz: MD5 checksum mismatch: expected 0123456789abcdef0123456789abcdef, found "),
        "{msg}"
    );
    assert_eq!(entries(cache.path()), Vec::<String>::new());

    // A missing file (404) and a short body leave nothing either.
    let mut r404 = mnist_remote(served.path(), &server.base);
    r404.files[3].0 = "nope.gz".into();
    let msg = download(&r404, cache.path()).unwrap_err().to_string();
    assert!(
        msg.contains("nope.gz: download failed: HTTP status HTTP/1.0 404"),
        "{msg}"
    );
    assert_eq!(entries(cache.path()), Vec::<String>::new());
    let short = mnist_remote(served.path(), &format!("{}short/", server.base));
    let msg = download(&short, cache.path()).unwrap_err().to_string();
    assert!(msg.contains("received"), "{msg}");
    assert_eq!(entries(cache.path()), Vec::<String>::new());

    // Nothing listens: an error, nothing left.
    let dead = remote.clone().with_base_url("http://127.0.0.1:1/");
    assert!(matches!(
        download(&dead, cache.path()),
        Err(DataError::Download { .. })
    ));
    let https = remote.with_base_url("https://127.0.0.1:1/");
    let msg = download(&https, cache.path()).unwrap_err().to_string();
    if cfg!(feature = "https") {
        assert!(msg.contains("download failed"), "{msg}");
    } else {
        assert!(msg.contains("TLS"), "{msg}");
    }
    assert_eq!(entries(cache.path()), Vec::<String>::new());
}

/// A ustar archive of `(name, bytes)` members, gzipped.
fn tar_gz(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, data) in members {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        tar.extend_from_slice(&h);
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend_from_slice(&[0; 1024]);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&tar).unwrap();
    e.finish().unwrap()
}

fn cifar_records(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| std::iter::once((i % 10) as u8).chain(std::iter::repeat_n(i as u8, 3072)))
        .collect()
}

#[test]
fn downloads_and_extracts_cifar_archive_through_the_resolver() {
    let served = TempDir::new("dl-served");
    let mut members: Vec<(&str, Vec<u8>)> = CIFAR10_TRAIN_FILES
        .iter()
        .map(|f| (*f, cifar_records(2)))
        .collect();
    members.push((CIFAR10_TEST_FILE, cifar_records(3)));
    let mut named: Vec<(String, Vec<u8>)> = members
        .into_iter()
        .map(|(f, d)| (format!("cifar-10-batches-bin/{f}"), d))
        .collect();
    named.push((
        "cifar-10-batches-bin/readme.html".into(),
        b"<html>".to_vec(),
    ));
    named.push(("../evil.bin".into(), vec![0; 3073]));
    let refs: Vec<(&str, Vec<u8>)> = named.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let archive = served.join("cifar-10-binary.tar.gz");
    std::fs::write(&archive, tar_gz(&refs)).unwrap();
    let server = Server::start(served.path().into());

    // The official checksum does not match this archive: refused, nothing kept.
    let cache = TempDir::new("dl-cache");
    let mut resolver = Resolver {
        cache_dir: Some(cache.path().into()),
        download: true,
        mirror: Some(server.base.clone()),
        ..Resolver::default()
    };
    let msg = resolver.resolve("cifar10").unwrap_err().to_string();
    assert!(
        msg.contains("download failed") && msg.contains("checksum mismatch"),
        "{msg}"
    );
    assert!(
        msg.contains(&cache.join("cifar10").display().to_string()),
        "{msg}"
    );
    assert_eq!(entries(cache.path()), Vec::<String>::new());

    // With the archive's own checksum (a trusted mirror's), it is fetched and unpacked.
    let remote = official_remote("cifar10")
        .unwrap()
        .with_base_url(&server.base);
    let remote = Remote {
        files: vec![(remote.files[0].0.clone(), md5_of(&archive))],
        ..remote
    };
    let dir = download(&remote, cache.path()).unwrap();
    let mut expected: Vec<String> = CIFAR10_TRAIN_FILES.iter().map(|s| s.to_string()).collect();
    expected.push(CIFAR10_TEST_FILE.into());
    expected.push("evil.bin".into());
    expected.sort();
    assert_eq!(entries(&dir), expected);
    assert_eq!(entries(cache.path()), vec!["cifar10"]); // nothing escaped the folder
    let d = load_cifar10_binary(&dir).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (10, 3));
    // Now the resolver finds it in the cache without downloading.
    resolver.mirror = Some("http://127.0.0.1:1/".into());
    let found = resolver.resolve("cifar10").unwrap();
    assert_eq!((found.layout, found.path), (Layout::CifarBinary, Some(dir)));
    // Downloading off: the error says so.
    let off = Resolver::default();
    let msg = off.resolve("mnist").unwrap_err().to_string();
    assert!(
        msg.contains(
            "https://ossci-datasets.s3.amazonaws.com/mnist/ (not downloaded: downloading is off"
        ),
        "{msg}"
    );
}
