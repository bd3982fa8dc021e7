//! The candle-backed [`Detector`]: glue between pre-processing, the YOLOv8 network and
//! post-processing, plus timing and raw-output hooks for the parity tests and the bench.

use std::time::{Duration, Instant};

use candle_core::Device;
use image::DynamicImage;

use crate::vision::postprocess::{decode, nms, unletterbox};
use crate::vision::preprocess::preprocess;
use crate::vision::yolo::YoloV8;
use crate::vision::{DetectOptions, Detection, Detector, ModelCard, VisionError};

/// Wall-clock split of one detection, for the bench.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub preprocess: Duration,
    pub forward: Duration,
    pub postprocess: Duration,
}

pub struct YoloDetector {
    net: YoloV8,
    card: ModelCard,
    opts: DetectOptions,
    device: Device,
}

impl YoloDetector {
    pub fn new(net: YoloV8, card: ModelCard, opts: DetectOptions, device: Device) -> Self {
        Self { net, card, opts, device }
    }

    /// Number of classes the network outputs.
    pub fn card_classes(&self) -> usize {
        self.card.classes.len()
    }

    pub fn options(&self) -> DetectOptions {
        self.opts
    }

    /// Runs the network on an already pre-processed `[3, S, S]` CHW input; returns the raw
    /// `[4 + nc, anchors]` output, row-major (what ONNX Runtime's `output0` holds).
    pub fn forward_raw(&self, chw: &[f32]) -> Result<Vec<f32>, VisionError> {
        let s = self.card.input_size as usize;
        if chw.len() != 3 * s * s {
            return Err(VisionError::Invalid(format!("input has {} values, expected 3x{s}x{s}", chw.len())));
        }
        Ok(self.net.forward_chw(chw, s, &self.device)?)
    }

    /// Detection with a timing split.
    pub fn detect_timed(&self, img: &DynamicImage) -> Result<(Vec<Detection>, Timings), VisionError> {
        let t0 = Instant::now();
        let (chw, lb) = preprocess(img, self.card.input_size);
        let t1 = Instant::now();
        let raw = self.forward_raw(&chw)?;
        let t2 = Instant::now();
        let nc = self.card.classes.len();
        let kept = nms(decode(&raw, nc, self.opts.conf), self.opts.iou, self.opts.max_det);
        let dets = kept
            .into_iter()
            .map(|c| Detection {
                class_id: c.class_id,
                class_name: self.card.classes.get(c.class_id).cloned().unwrap_or_default(),
                role: self.card.role_of(c.class_id),
                confidence: c.score,
                bbox: unletterbox(&c.bbox, &lb),
            })
            .collect();
        let t3 = Instant::now();
        Ok((dets, Timings { preprocess: t1 - t0, forward: t2 - t1, postprocess: t3 - t2 }))
    }
}

impl Detector for YoloDetector {
    fn detect(&self, img: &DynamicImage) -> Result<Vec<Detection>, VisionError> {
        let _span = tracing::debug_span!("detect", model = %self.card.name).entered();
        Ok(self.detect_timed(img)?.0)
    }

    fn card(&self) -> &ModelCard {
        &self.card
    }
}
