//! `[eval]`: how validation and test images are evaluated (multi-crop, test-time views).

use serde::Deserialize;

/// `[eval]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Items per evaluation minibatch.
    #[serde(default = "default_eval_batch")]
    pub batch: usize,
    /// Average the predictions over 10 views (centre, 4 corners and their
    /// mirrors) of each held-out image, cropped to the network's input size;
    /// windows that coincide count once (views as large as the image: the
    /// image and its mirror).
    #[serde(default)]
    pub multi_crop: bool,
    /// Whether multi-crop also uses the mirror images (10 views instead of 5);
    /// turn off where mirroring changes the class (digits, text).
    #[serde(default = "default_true")]
    pub mirror: bool,
    /// Zeros added on every side of each held-out image before multi-crop
    /// cuts its views (as the training crop's `pad`): with views as large as
    /// the image, the centre view is the image and the corner views are it
    /// shifted by `pad` pixels diagonally (5 views, 10 with mirrors).
    #[serde(default)]
    pub pad: usize,
    /// airbench's test-time augmentation: the logits are averaged over the
    /// image and its mirror (¼ each) and both shifted by `tta` pixels
    /// up-left and down-right, edges reflected (⅛ each); `tta = 0`: the
    /// image and its mirror (½ each). Instead of `multi_crop`.
    #[serde(default)]
    pub tta: Option<usize>,
}

fn default_true() -> bool {
    true
}

fn default_eval_batch() -> usize {
    500
}

impl Default for EvalSpec {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}
