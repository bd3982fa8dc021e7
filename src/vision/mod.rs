//! ServiceBay's eyes: object detection on service photos.
//!
//! This module owns everything between "an image and an installed model name" and "a list of
//! detections with domain roles": the [`Detector`] trait the rest of the daemon talks to, the
//! YOLOv8 network written in candle ([`yolo`]) with our CPU convolution ([`conv_kernel`]) on
//! blocked activations ([`blocked`]),
//! the Ultralytics-compatible pre/post-processing ([`preprocess`], [`postprocess`]), the
//! Python-free importer for Ultralytics files ([`import`], reading [`onnx`] and [`pt`]), the
//! detector glue ([`engine`]), the photo quality gate ([`quality`]), the privacy blur
//! ([`blur`]) and CLI helpers ([`cli`]).
//!
//! Data flow: `preprocess::decode_image` → `preprocess::preprocess` (letterbox, CHW) →
//! `yolo::YoloV8::forward` (`[1, 4 + nc, 8400]`) → `postprocess::{decode, nms, unletterbox}` →
//! [`Detection`]s with the roles of the model card.
//!
//! Weights: Ultralytics' YOLOv8 weights are AGPL-3.0 (the card's `licence` carries the text
//! from the file); dealers bring their own damage model through the same importer.
//!
//! It knows nothing of cases, SQL or HTTP: product code gets `Box<dyn Detector>` and plain
//! [`Detection`] values, never a candle type. Heavy compute is synchronous; callers run it on
//! threads they own (see the conventions, habit 4).

pub mod blocked;
pub mod blur;
pub mod cli;
pub mod codes;
pub mod conv_kernel;
pub mod engine;
pub mod import;
pub mod measure;
pub mod onnx;
pub mod postprocess;
pub mod preprocess;
pub mod pt;
pub mod quality;
pub mod viewpoint;
pub mod yolo;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use import::{import_model, list_models, load_detector};

/// One object found in a photo, in the photo's own (EXIF-corrected) pixel coordinates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub class_id: usize,
    pub class_name: String,
    pub role: Role,
    pub confidence: f32,
    /// x1, y1, x2, y2 in original pixels.
    pub bbox: [f32; 4],
}

/// What a detector class means for the service workflow. A dealer's own damage model plugs in
/// by mapping its classes to `damage:<type>` in its model card.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// A whole vehicle: used for framing, shot guess and the "no vehicle" quality reason.
    Vehicle,
    /// A kind of damage (scratch, dent, ...): becomes a finding.
    Damage(String),
    /// A vehicle part (bumper, door, ...): used for measurement references.
    Part(String),
    /// A face box: blurred whole before a photo leaves the store.
    PiiFace,
    /// A licence plate box: blurred whole before a photo leaves the store.
    PiiPlate,
    /// A whole person (COCO `person`). Not itself a face: the blur covers only the head region
    /// of the box (the top part, see [`blur`]). String form `pii:person`. We use this instead of
    /// `pii:face` because blurring a whole person box would hide the car behind them.
    PiiPerson,
    /// Present in the model but irrelevant to us.
    Ignore,
}

impl Role {
    pub fn is_pii(&self) -> bool {
        matches!(self, Role::PiiFace | Role::PiiPlate | Role::PiiPerson)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Vehicle => f.write_str("vehicle"),
            Role::Damage(t) => write!(f, "damage:{t}"),
            Role::Part(p) => write!(f, "part:{p}"),
            Role::PiiFace => f.write_str("pii:face"),
            Role::PiiPlate => f.write_str("pii:plate"),
            Role::PiiPerson => f.write_str("pii:person"),
            Role::Ignore => f.write_str("ignore"),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = VisionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            VisionError::Card(format!(
                "unknown role '{s}': use vehicle, damage:<type>, part:<name>, pii:face, pii:plate, pii:person or ignore"
            ))
        };
        match s {
            "vehicle" => Ok(Role::Vehicle),
            "pii:face" => Ok(Role::PiiFace),
            "pii:plate" => Ok(Role::PiiPlate),
            "pii:person" => Ok(Role::PiiPerson),
            "ignore" => Ok(Role::Ignore),
            _ => {
                if let Some(t) = s.strip_prefix("damage:").filter(|t| !t.is_empty()) {
                    Ok(Role::Damage(t.to_string()))
                } else if let Some(p) = s.strip_prefix("part:").filter(|p| !p.is_empty()) {
                    Ok(Role::Part(p.to_string()))
                } else {
                    Err(bad())
                }
            }
        }
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The TOML file written next to each installed model's weights (`models/NAME.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub name: String,
    /// Ultralytics scale letter (n/s/m/l/x) guessed from the weight shapes, or "custom".
    pub scale: String,
    /// Square network input side in pixels (640 for every Ultralytics export we know).
    pub input_size: u32,
    /// Class names in class-id order.
    pub classes: Vec<String>,
    /// One role per class, same order as `classes`.
    pub roles: Vec<Role>,
    /// SHA-256 of the file the weights were imported from.
    pub source_sha256: String,
    /// File name the weights were imported from (onnx, pt or safetensors).
    pub source_file: String,
    /// Licence text from the file's metadata (or "unknown"). Ultralytics weights are AGPL-3.0.
    pub licence: String,
    /// Batch-norm epsilon used when the stored weights are un-fused (Ultralytics uses 1e-3).
    #[serde(default = "default_bn_eps")]
    pub bn_eps: f64,
}

fn default_bn_eps() -> f64 {
    1e-3
}

impl ModelCard {
    pub fn role_of(&self, class_id: usize) -> Role {
        self.roles.get(class_id).cloned().unwrap_or(Role::Ignore)
    }
}

/// Options for a detector instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectOptions {
    /// Minimum class confidence kept (Ultralytics default 0.25).
    pub conf: f32,
    /// IoU above which a lower-scored box of the same class is suppressed (Ultralytics 0.7).
    pub iou: f32,
    /// At most this many detections per image (Ultralytics 300).
    pub max_det: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self { conf: 0.25, iou: 0.7, max_det: 300 }
    }
}

/// What a detector can do. Implementations are synchronous and CPU/GPU heavy: call them from a
/// thread you own, not from an async executor.
pub trait Detector: Send + Sync {
    fn detect(&self, img: &image::DynamicImage) -> Result<Vec<Detection>, VisionError>;
    fn card(&self) -> &ModelCard;
}

/// Errors of the vision engine. Messages are written for the operator: they say what to do.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("model '{name}' is not installed ({path} missing): run scripts/fetch-models.sh, then `servicebay model import FILE`")]
    ModelMissing { name: String, path: PathBuf },
    #[error("cannot read model file {path}: {reason}")]
    ModelFormat { path: PathBuf, reason: String },
    #[error("unsupported network in {path}: {reason} (only Ultralytics YOLOv8 detection models are supported)")]
    Architecture { path: PathBuf, reason: String },
    #[error("invalid model card: {0}")]
    Card(String),
    #[error("cannot read image {what}: {reason}")]
    Image { what: String, reason: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// candle errors carry a backtrace in their `Display` when `RUST_BACKTRACE` is set: operators
/// get the first line (the message), the log gets the rest at debug level.
pub(crate) fn candle_message(e: &candle_core::Error) -> String {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or_default().to_string();
    if first.len() < full.len() {
        tracing::debug!(error = %full, "candle error with backtrace");
    }
    first
}

impl From<candle_core::Error> for VisionError {
    fn from(e: candle_core::Error) -> Self {
        VisionError::Inference(candle_message(&e))
    }
}

impl VisionError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VisionError::Io { path: path.into(), source }
    }
    pub(crate) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        VisionError::ModelFormat { path: path.into(), reason: reason.into() }
    }
}
