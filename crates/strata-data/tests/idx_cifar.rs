//! IDX (MNIST) and CIFAR-10 binary readers: real data and every bad-input path.

mod common;

use common::{shared_data, write_mnist_like, TempDir};
use std::io::Write;
use strata_data::*;

#[test]
fn real_mnist() {
    let d = load_mnist_like(shared_data().join("mnist")).unwrap();
    assert_eq!(d.train.shape(), [60_000, 1, 28, 28]);
    assert_eq!(d.test.shape(), [10_000, 1, 28, 28]);
    assert_eq!(
        d.train.class_counts(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(d.test.class_counts().iter().sum::<usize>(), 10_000);
    let Pixels::U8(px) = d.train.pixels() else {
        panic!("MNIST pixels are bytes")
    };
    let mean = px.iter().map(|&p| p as f64).sum::<f64>() / px.len() as f64;
    assert!((mean - 33.32).abs() < 0.01, "mean pixel {mean}");
    let t = d.test.take(3).to_tensor().unwrap();
    assert_eq!(t.shape(), &[3, 1, 28, 28]);
    assert!(t.to_vec().iter().all(|&x| (0.0..=1.0).contains(&x)));
}

#[test]
fn plain_and_gzipped_round_trip() {
    for gzip in [false, true] {
        let dir = TempDir::new("idx-rt");
        write_mnist_like(dir.path(), 7, 3, 4, 5, gzip);
        let d = load_mnist_like(dir.path()).unwrap();
        assert_eq!(d.train.shape(), [7, 1, 4, 5]);
        assert_eq!(d.test.shape(), [3, 1, 4, 5]);
        assert_eq!(d.train.labels(), &[0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(d.test.pixels(), &Pixels::U8((0..60).collect()));
        let f = load_fashion_mnist(dir.path()).unwrap();
        assert_eq!(f.train.class_names()[9], "Ankle boot");
    }
}

fn write_bytes(path: &std::path::Path, bytes: &[u8]) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn wrong_magic() {
    let dir = TempDir::new("idx-magic");
    let p = dir.join("labels-as-images");
    write_idx(&p, &[4], &[1, 2, 3, 4], false).unwrap();
    let e = read_idx(&p, Some(IDX_IMAGES_MAGIC)).unwrap_err();
    assert!(matches!(
        e,
        DataError::BadMagic {
            expected: 0x803,
            found: 0x801,
            ..
        }
    ));
    let msg = e.to_string();
    assert!(
        msg.contains("labels-as-images")
            && msg.contains("0x00000803")
            && msg.contains("0x00000801"),
        "{msg}"
    );
    // Not an IDX file at all, plain and gzipped.
    let q = dir.join("text.gz");
    write_bytes(&q, &gz(b"hello, world"));
    assert!(matches!(
        read_idx(&q, Some(IDX_IMAGES_MAGIC)),
        Err(DataError::BadMagic { .. })
    ));
    write_bytes(&q, b"hello, world");
    assert!(matches!(
        read_idx(&q, None),
        Err(DataError::BadMagic { .. })
    ));
    // A float IDX file is refused with its type.
    write_bytes(&q, &[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    let msg = read_idx(&q, None).unwrap_err().to_string();
    assert!(msg.contains("0x0d") && msg.contains("0x08"), "{msg}");
}

#[test]
fn truncated_files() {
    let dir = TempDir::new("idx-trunc");
    let p = dir.join("imgs");
    write_idx(&p, &[10, 3, 3], &[7; 90], false).unwrap();
    let full = std::fs::read(&p).unwrap();
    // Cut inside the header, inside the dims, inside the data.
    for cut in [2, 9, 50] {
        write_bytes(&p, &full[..cut]);
        let e = read_idx(&p, Some(IDX_IMAGES_MAGIC)).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Truncated { .. } | DataError::DeclaredTooLarge { .. }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("imgs"), "{e}");
    }
    // Gzipped: the data stops early inside a whole stream...
    let g = dir.join("imgs.gz");
    write_bytes(&g, &gz(&full[..50]));
    let e = read_idx(&g, Some(IDX_IMAGES_MAGIC)).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::Truncated {
                expected: 106,
                found: 50,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!("{}: truncated: expected 106 bytes, found 50", g.display())
    );
    // ... or the gzip stream itself is cut.
    let z = gz(&full);
    write_bytes(&g, &z[..z.len() / 2]);
    let e = read_idx(&g, Some(IDX_IMAGES_MAGIC)).unwrap_err();
    assert!(e.to_string().contains("imgs.gz"), "{e}");
    // Bytes after the data are an error too.
    let mut long = full.clone();
    long.push(0);
    write_bytes(&p, &long);
    assert!(matches!(read_idx(&p, None), Err(DataError::Format { .. })));
    // An empty file.
    write_bytes(&p, &[]);
    assert!(matches!(
        read_idx(&p, None),
        Err(DataError::Truncated {
            expected: 4,
            found: 0,
            ..
        })
    ));
}

#[test]
fn oversized_declared_dims_are_refused_before_allocating() {
    let dir = TempDir::new("idx-huge");
    let p = dir.join("huge");
    // 4e9 × 4e9 × 4e9 images: overflows u64, in a 100-byte file.
    let mut bytes = vec![0, 0, 8, 3];
    for _ in 0..3 {
        bytes.extend_from_slice(&4_000_000_000u32.to_be_bytes());
    }
    bytes.extend_from_slice(&[0; 84]);
    write_bytes(&p, &bytes);
    let e = read_idx(&p, Some(IDX_IMAGES_MAGIC)).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::DeclaredTooLarge {
                declared: u64::MAX,
                available: 84,
                ..
            }
        ),
        "{e}"
    );
    // 60000 × 60000 × 60000 bytes (2e14, would abort on allocation) in a small file.
    let mut bytes = vec![0, 0, 8, 3];
    for _ in 0..3 {
        bytes.extend_from_slice(&60_000u32.to_be_bytes());
    }
    bytes.extend_from_slice(&[0; 1000]);
    write_bytes(&p, &bytes);
    let e = read_idx(&p, None).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::DeclaredTooLarge {
                declared: 216_000_000_000_000,
                available: 1000,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("huge"), "{e}");
    // The same gzipped: no deflate stream of this size expands that far.
    let g = dir.join("huge.gz");
    write_bytes(&g, &gz(&bytes));
    let e = read_idx(&g, None).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::DeclaredTooLarge {
                declared: 216_000_000_000_000,
                ..
            }
        ),
        "{e}"
    );
    // Overflowing dims, gzipped.
    let mut bytes = vec![0, 0, 8, 4];
    for _ in 0..4 {
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    }
    write_bytes(&g, &gz(&bytes));
    let e = read_idx(&g, None).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::DeclaredTooLarge {
                declared: u64::MAX,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn count_mismatch_and_bad_labels() {
    let dir = TempDir::new("idx-count");
    write_mnist_like(dir.path(), 5, 2, 2, 2, true);
    write_idx(
        dir.join("train-labels-idx1-ubyte.gz"),
        &[4],
        &[0, 1, 2, 3],
        true,
    )
    .unwrap();
    let e = load_mnist_like(dir.path()).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::CountMismatch {
                images: 5,
                labels: 4,
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte.gz holds 5 images"),
        "{msg}"
    );
    assert!(
        msg.contains("train-labels-idx1-ubyte.gz holds 4 labels"),
        "{msg}"
    );

    write_idx(
        dir.join("train-labels-idx1-ubyte.gz"),
        &[5],
        &[0, 1, 2, 3, 10],
        true,
    )
    .unwrap();
    let msg = load_mnist_like(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("train-labels-idx1-ubyte.gz") && msg.contains("label 4 is 10"),
        "{msg}"
    );

    std::fs::remove_file(dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let msg = load_mnist_like(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("t10k-images-idx3-ubyte.gz or t10k-images-idx3-ubyte"),
        "{msg}"
    );
}

fn cifar_records(n: usize, label0: u8) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push((label0 as usize + i) as u8 % 10);
        v.extend((0..3072).map(|k| ((k + i) % 256) as u8));
    }
    v
}

#[test]
fn cifar_binary_layout() {
    let dir = TempDir::new("cifar-bin");
    let base = dir.join("cifar-10-batches-bin");
    std::fs::create_dir(&base).unwrap();
    for (k, f) in CIFAR10_TRAIN_FILES.iter().enumerate() {
        write_bytes(&base.join(f), &cifar_records(3, k as u8));
    }
    write_bytes(&base.join(CIFAR10_TEST_FILE), &cifar_records(2, 7));
    let d = load_cifar10_binary(dir.path()).unwrap();
    assert_eq!(d.train.shape(), [15, 3, 32, 32]);
    assert_eq!(d.test.shape(), [2, 3, 32, 32]);
    assert_eq!(&d.train.labels()[..6], &[0, 1, 2, 1, 2, 3]);
    assert_eq!(d.test.labels(), &[7, 8]);
    assert_eq!(d.train.class_names()[0], "airplane");
    // CHW: the first value of the green plane of image 1 is byte 1 + 1024 of record 1.
    let Pixels::U8(px) = d.test.pixels() else {
        unreachable!()
    };
    assert_eq!(px[3072 + 1024], ((1024 + 1) % 256) as u8);
    assert_eq!(detect_layout(dir.path()), Some(Layout::CifarBinary));

    // Truncated record.
    let bad = base.join("data_batch_3.bin");
    write_bytes(&bad, &cifar_records(3, 0)[..3073 * 2 + 100]);
    let e = load_cifar10_binary(dir.path()).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::Truncated {
                expected: 9219,
                found: 6246,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("data_batch_3.bin"), "{e}");
    // Empty file.
    write_bytes(&bad, &[]);
    assert!(matches!(
        load_cifar10_binary(dir.path()),
        Err(DataError::Truncated { found: 0, .. })
    ));
    // Label out of range.
    let mut recs = cifar_records(3, 0);
    recs[3073] = 12;
    write_bytes(&bad, &recs);
    let msg = load_cifar10_binary(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("data_batch_3.bin") && msg.contains("record 1") && msg.contains("label 12"),
        "{msg}"
    );
    // Missing test batch.
    write_bytes(&bad, &cifar_records(3, 0));
    std::fs::remove_file(base.join(CIFAR10_TEST_FILE)).unwrap();
    let e = load_cifar10_binary(dir.path()).unwrap_err();
    assert!(
        matches!(e, DataError::Io { .. }) && e.to_string().contains("test_batch.bin"),
        "{e}"
    );
    // No layout at all.
    let empty = TempDir::new("cifar-none");
    assert!(load_cifar10_binary(empty.path()).is_err());
}

/// A header with a zero dimension in front of data says so, not "found more"
/// (issue 24, defect 11).
#[test]
fn zero_dimension_before_data_is_named() {
    let dir = common::TempDir::new("zero-dim");
    let p = dir.join("a.idx");
    // Magic 0x00000803, dims [0, 2, 2], then four bytes of pixels.
    let bytes = [0u8, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4];
    std::fs::write(&p, bytes).unwrap();
    let e = strata_data::read_idx(&p, None).unwrap_err().to_string();
    assert!(e.contains("dimension 0") && e.contains("is 0"), "{e}");
    assert!(e.contains("a.idx"), "{e}");
}
