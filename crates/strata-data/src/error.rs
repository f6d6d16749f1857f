//! The error type of every reader: [`DataError`].

use std::fmt::Write as _;
use std::path::PathBuf;

/// Everything that can go wrong while reading, resolving or batching a data set.
///
/// Every variant that concerns a file names it, and says what was expected and
/// what was found. No reader panics on bad input: it returns one of these.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused to open or read a file or folder.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// A file starts with the wrong magic number.
    #[error("{}: wrong magic number: expected {expected:#010x} ({what}), found {found:#010x}", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What kind of file was expected (`"IDX images"`, ...).
        what: &'static str,
        /// The magic number that was expected.
        expected: u32,
        /// The first four bytes of the file, big-endian.
        found: u32,
    },

    /// A file ends before the data its header declares.
    #[error("{}: truncated: expected {expected} bytes, found {found}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// How many bytes the header (or the format) requires.
        expected: u64,
        /// How many bytes the file holds (for gzip files, after decompression).
        found: u64,
    },

    /// A header declares more data than the file can hold; refused before any allocation.
    #[error("{}: header declares {declared} bytes of data, but the file can hold at most {available} (truncated file or corrupt header)", path.display())]
    DeclaredTooLarge {
        /// The file.
        path: PathBuf,
        /// The size the header declares (saturated at `u64::MAX` on overflow).
        declared: u64,
        /// The most data the file can hold: its size after the header for a plain
        /// file, the most its compressed size can expand to for a gzipped one.
        available: u64,
    },

    /// An images file and its labels file disagree on the number of samples.
    #[error("{} holds {images} images but {} holds {labels} labels", images_path.display(), labels_path.display())]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// Number of images it declares.
        images: usize,
        /// The labels file.
        labels_path: PathBuf,
        /// Number of labels it declares.
        labels: usize,
    },

    /// A file is malformed in some other way (its layout, a value out of range).
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong, with expected and found values.
        message: String,
    },

    /// An image file could not be decoded.
    #[error("{}: cannot decode image: {message}", path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },

    /// An image does not have the size of the first image of the data set.
    #[error("{}: image is {found_w}x{found_h}, expected {expected_w}x{expected_h} (the size of {})", path.display(), first.display())]
    ImageSize {
        /// The image with the odd size.
        path: PathBuf,
        /// Its width.
        found_w: u32,
        /// Its height.
        found_h: u32,
        /// The width of the first image.
        expected_w: u32,
        /// The height of the first image.
        expected_h: u32,
        /// The first image, whose size sets the data set's.
        first: PathBuf,
    },

    /// A class folder of an image-folder data set holds no image.
    #[error("{}: class folder holds no image (expected *.png, *.jpg or *.jpeg files)", path.display())]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },

    /// A data set could not be found under any of the places it may live.
    #[error("{}", not_found_message(name, looked))]
    NotFound {
        /// The name (or path) asked for.
        name: String,
        /// Every place looked at, each with why it did not do.
        looked: Vec<(PathBuf, String)>,
    },

    /// A download failed (network, HTTP status, short body).
    #[error("{url}: download failed: {message}")]
    Download {
        /// The address.
        url: String,
        /// What went wrong.
        message: String,
    },

    /// A downloaded file does not have its published checksum; it was deleted.
    #[error(
        "{url}: MD5 checksum mismatch: expected {expected}, found {found} (the file was not kept)"
    )]
    Checksum {
        /// The address the file came from.
        url: String,
        /// The published MD5 sum.
        expected: String,
        /// The MD5 sum of what was received.
        found: String,
    },

    /// A caller passed an argument that cannot be honoured (a batch size of 0, a
    /// validation split larger than the data set, ...).
    #[error("invalid argument: {0}")]
    Invalid(String),

    /// A tensor could not be built (should not happen for data this crate made).
    #[error(transparent)]
    Shape(#[from] strata_tensor::ShapeError),
}

fn not_found_message(name: &str, looked: &[(PathBuf, String)]) -> String {
    let mut s = format!("data set `{name}` not found; looked in:");
    for (p, why) in looked {
        let _ = write!(s, "\n  {} ({why})", p.display());
    }
    s
}

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`DataError::Format`] for `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// `Result` with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;
