//! Image folders and name resolution.

mod common;

use common::{shared_data, write_mnist_like, TempDir};
use std::path::Path;
use strata_data::*;

fn rgb(w: u32, h: u32, seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([seed, (x * 10) as u8, (y * 20) as u8])
    })
}

/// train/ and test/ with classes `cat`, `ant` (sorted: ant = 0, cat = 1), PNG.
fn write_tree(root: &Path) {
    for split in ["train", "test"] {
        for (class, n) in [("cat", 3u8), ("ant", 2u8)] {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                rgb(4, 3, i * 10 + class.len() as u8)
                    .save(d.join(format!("{i:03}.png")))
                    .unwrap();
            }
            std::fs::write(d.join("notes.txt"), "ignored").unwrap();
        }
    }
}

#[test]
fn reads_png_tree_in_sorted_order() {
    let dir = TempDir::new("folder");
    write_tree(dir.path());
    let d = load_image_folder_split(dir.path()).unwrap();
    assert_eq!(
        d.train.class_names(),
        &["ant".to_string(), "cat".to_string()]
    );
    assert_eq!(d.train.shape(), [5, 3, 3, 4]);
    assert_eq!(d.train.labels(), &[0, 0, 1, 1, 1]);
    let Pixels::U8(px) = d.train.pixels() else {
        unreachable!()
    };
    // Image 3 is cat/001.png: red plane all 13, green = 10·x, blue = 20·y (CHW).
    let img = &px[3 * 36..4 * 36];
    assert!(img[..12].iter().all(|&v| v == 13));
    assert_eq!(&img[12..16], &[0, 10, 20, 30]);
    assert_eq!(&img[24..36], &[0, 0, 0, 0, 20, 20, 20, 20, 40, 40, 40, 40]);
    assert_eq!(detect_layout(dir.path()), Some(Layout::ImageFolder));
    // Deterministic.
    assert_eq!(load_image_folder_split(dir.path()).unwrap(), d);
}

#[test]
fn grey_and_jpeg() {
    let dir = TempDir::new("folder-grey");
    let c = dir.join("x/one");
    std::fs::create_dir_all(&c).unwrap();
    image::GrayImage::from_pixel(5, 5, image::Luma([200]))
        .save(c.join("a.png"))
        .unwrap();
    image::GrayImage::from_pixel(5, 5, image::Luma([100]))
        .save(c.join("b.JPG"))
        .unwrap();
    let d = load_image_folder(dir.path(), "x").unwrap();
    assert_eq!(d.shape(), [2, 1, 5, 5]);
    let Pixels::U8(px) = d.pixels() else {
        unreachable!()
    };
    assert!(px[..25].iter().all(|&v| v == 200));
    assert!(px[25..].iter().all(|&v| v.abs_diff(100) <= 2));
    // A colour image in the set makes every image colour.
    rgb(5, 5, 9).save(c.join("c.png")).unwrap();
    let d = load_image_folder(dir.path(), "x").unwrap();
    assert_eq!(d.shape(), [3, 3, 5, 5]);
}

#[test]
fn bad_folders() {
    let dir = TempDir::new("folder-bad");
    write_tree(dir.path());
    // Empty class folder.
    let empty = dir.join("train/bee");
    std::fs::create_dir(&empty).unwrap();
    let e = load_image_folder(dir.path(), "train").unwrap_err();
    assert!(matches!(e, DataError::EmptyClass { .. }), "{e}");
    assert!(e.to_string().contains("train/bee"), "{e}");
    std::fs::remove_dir(&empty).unwrap();
    // Unreadable image.
    let junk = dir.join("train/cat/002.png");
    std::fs::write(&junk, b"not a png at all").unwrap();
    let e = load_image_folder(dir.path(), "train").unwrap_err();
    assert!(matches!(e, DataError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("cat/002.png"), "{e}");
    assert!(e.to_string().contains("neither a PNG nor a JPEG"), "{e}");
    // A PNG whose header checksum is wrong: said in words, without the
    // decoder's internal dump.
    let png = dir.join("train/cat/002.png");
    rgb(4, 3, 0).save(&png).unwrap();
    let mut bytes = std::fs::read(&png).unwrap();
    // Signature (8), IHDR length (4) and type (4), 13 data bytes, then its CRC.
    bytes[8 + 8 + 13] ^= 0xff;
    std::fs::write(&png, &bytes).unwrap();
    let e = load_image_folder(dir.path(), "train").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("cat/002.png") && msg.contains("checksum"),
        "{msg}"
    );
    assert!(!msg.contains("ChunkType") && !msg.contains("0x"), "{msg}");
    // A JPEG cut short.
    let jpg = dir.join("train/cat/003.jpg");
    rgb(4, 3, 0).save(&jpg).unwrap();
    let bytes = std::fs::read(&jpg).unwrap();
    std::fs::write(&jpg, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::remove_file(&junk).unwrap();
    let e = load_image_folder(dir.path(), "train").unwrap_err();
    assert!(matches!(e, DataError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("cat/003.jpg"), "{e}");
    assert!(e.to_string().contains("cut short"), "{e}");
    std::fs::remove_file(&jpg).unwrap();
    // Mismatched size.
    rgb(5, 3, 0).save(&junk).unwrap();
    let e = load_image_folder(dir.path(), "train").unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            DataError::ImageSize {
                found_w: 5,
                expected_w: 4,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("cat/002.png: image is 5x3, expected 4x3") && msg.contains("ant/000.png"),
        "{msg}"
    );
    // No class folders, missing split.
    let none = TempDir::new("folder-none");
    assert!(load_class_folder(none.path()).is_err());
    assert!(matches!(
        load_image_folder(none.path(), "train"),
        Err(DataError::Io { .. })
    ));
    // Train and test with different classes.
    rgb(4, 3, 0).save(&junk).unwrap();
    std::fs::rename(dir.join("test/cat"), dir.join("test/cow")).unwrap();
    let msg = load_image_folder_split(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("cow"), "{msg}");
}

#[test]
fn real_cifar10_test_split() {
    let t = std::time::Instant::now();
    let d = load_image_folder(shared_data().join("cifar10"), "test").unwrap();
    eprintln!("10,000 CIFAR-10 JPEGs in {:?}", t.elapsed());
    assert_eq!(d.shape(), [10_000, 3, 32, 32]);
    assert_eq!(d.class_counts(), vec![1000; 10]);
    let names: Vec<&str> = d.class_names().iter().map(String::as_str).collect();
    assert_eq!(names, CIFAR10_CLASSES);
}

fn resolver(dirs: &[&TempDir]) -> Resolver {
    Resolver {
        data_dir: Some(dirs[0].path().into()),
        env_dir: Some(dirs[1].path().into()),
        cache_dir: Some(dirs[2].path().into()),
        system_dir: Some(dirs[3].path().into()),
        ..Resolver::default()
    }
}

#[test]
fn resolution_order_and_not_found() {
    let dirs: Vec<TempDir> = (0..4).map(|_| TempDir::new("resolve")).collect();
    let r = resolver(&dirs.iter().collect::<Vec<_>>());
    // Nothing anywhere: the error lists all four places.
    let e = r.resolve("mnist").unwrap_err();
    let msg = e.to_string();
    for d in &dirs {
        assert!(
            msg.contains(&d.join("mnist").display().to_string()),
            "{msg}"
        );
    }
    assert!(
        msg.starts_with("data set `mnist` not found; looked in:"),
        "{msg}"
    );
    // A folder without a known layout is looked at and explained.
    std::fs::create_dir(dirs[0].join("mnist")).unwrap();
    let msg = r.resolve("mnist").unwrap_err().to_string();
    assert!(msg.contains("holds neither"), "{msg}");
    // Found in the system folder, then the cache, then $STRATA_DATA, then data_dir.
    for k in (0..4).rev() {
        let d = dirs[k].join("mnist");
        std::fs::create_dir_all(&d).unwrap();
        write_mnist_like(&d, 2, 1, 2, 2, k % 2 == 0);
        let found = r.resolve("mnist").unwrap();
        assert_eq!(found.path.as_deref(), Some(d.as_path()));
        assert_eq!(found.layout, Layout::Idx);
    }
    let data = r.resolve("mnist").unwrap().load().unwrap();
    assert_eq!(data.train.len(), 2);
    // An explicit path wins and needs no search.
    let p = dirs[3].join("mnist");
    let found = r.resolve(p.to_str().unwrap()).unwrap();
    assert_eq!(found.path.as_deref(), Some(p.as_path()));
    let msg = r.resolve("/no/such/place").unwrap_err().to_string();
    assert!(msg.contains("/no/such/place (no such folder)"), "{msg}");
    // Fashion-MNIST gets its class names.
    let f = dirs[2].join("fashion-mnist");
    std::fs::create_dir_all(&f).unwrap();
    write_mnist_like(&f, 2, 1, 2, 2, true);
    let data = r.resolve("fashion-mnist").unwrap().load().unwrap();
    assert_eq!(data.test.class_names()[0], "T-shirt/top");
    // digits is embedded.
    let d = r.resolve("digits").unwrap();
    assert_eq!(d.layout, Layout::Embedded);
    assert_eq!(d.load().unwrap().test.len(), DIGITS_TEST_LEN);
}

#[test]
fn resolves_shared_data() {
    let shared = shared_data();
    let m = resolve("mnist", Some(&shared)).unwrap();
    assert_eq!(
        (m.layout, m.path),
        (Layout::Idx, Some(shared.join("mnist")))
    );
    let c = resolve("cifar10", Some(&shared)).unwrap();
    assert_eq!(c.layout, Layout::ImageFolder);
    assert!(matches!(
        Resolver::default().resolve("cifar10"),
        Err(DataError::NotFound { .. })
    ));
}

/// Train and test images of different shapes are refused when the data set
/// is opened, naming the folder and both shapes (issue 24, defect 5).
#[test]
fn train_and_test_of_different_shapes_are_refused() {
    let dir = common::TempDir::new("shapes");
    common::write_mnist_like(dir.path(), 6, 2, 4, 4, false);
    // Replace the test images by 2×8 ones: the same pixels per image.
    let px: Vec<u8> = (0..2 * 16).map(|i| i as u8).collect();
    strata_data::write_idx(dir.join("t10k-images-idx3-ubyte"), &[2, 2, 8], &px, false).unwrap();
    let e = strata_data::load(dir.path().to_str().unwrap(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1×4×4") && e.contains("1×2×8"), "{e}");
    assert!(e.contains(dir.path().to_str().unwrap()), "{e}");
}
