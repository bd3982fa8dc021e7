//! Post-processing of the raw YOLOv8 output, as pure functions: anchor grid, decode of
//! `[4 + nc, anchors]` into scored boxes, class-wise NMS and the mapping of boxes from the
//! letterboxed network input back to original pixels. Same rules as Ultralytics'
//! `non_max_suppression` (single label per box, conf > threshold, torchvision-style greedy NMS
//! per class) so our detections match theirs.

use crate::vision::preprocess::Letterbox;

/// A box in network-input pixels (x1, y1, x2, y2) with its best class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub class_id: usize,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// Anchor centres (grid cell centre, in cells) and their stride for each level, flattened in
/// the order of the head's output: level by level, row-major. Returns (`[2 * A]` laid out as
/// all x then all y, `[A]` strides).
pub fn make_anchors(sizes: &[(usize, usize)], strides: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let total: usize = sizes.iter().map(|(h, w)| h * w).sum();
    let mut xs = Vec::with_capacity(total);
    let mut ys = Vec::with_capacity(total);
    let mut st = Vec::with_capacity(total);
    for (&(h, w), &s) in sizes.iter().zip(strides) {
        for y in 0..h {
            for x in 0..w {
                xs.push(x as f32 + 0.5);
                ys.push(y as f32 + 0.5);
                st.push(s as f32);
            }
        }
    }
    xs.extend(ys);
    (xs, st)
}

/// DFL box decode + sigmoid, the tail of the Ultralytics `Detect` head, for one image.
/// `box_logits`: `[4 * reg_max, A]` (left, top, right, bottom; `reg_max` bins each),
/// `cls_logits`: `[nc, A]`, `anchor_xy`/`strides` from [`make_anchors`]. Returns the
/// `[4 + nc, A]` network output: cx, cy, w, h in input pixels, then class probabilities.
pub fn dfl_decode(box_logits: &[f32], cls_logits: &[f32], nc: usize, reg_max: usize, anchor_xy: &[f32], strides: &[f32]) -> Vec<f32> {
    use crate::vision::conv_kernel::fast_exp;
    let a = strides.len();
    let mut out = vec![0f32; (4 + nc) * a];
    if box_logits.len() != 4 * reg_max * a || cls_logits.len() != nc * a || anchor_xy.len() != 2 * a {
        return out;
    }
    let mut dist = [0f32; 4];
    let mut e = vec![0f32; reg_max];
    for i in 0..a {
        for (side, d) in dist.iter_mut().enumerate() {
            // Softmax over the bins (max-subtracted, like PyTorch), then the expectation.
            let bin = |j: usize| box_logits[(side * reg_max + j) * a + i];
            let m = (0..reg_max).map(bin).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (j, ej) in e.iter_mut().enumerate() {
                *ej = fast_exp(bin(j) - m);
                sum += *ej;
            }
            *d = e.iter().enumerate().map(|(j, ej)| ej / sum * j as f32).sum();
        }
        let (ax, ay) = (anchor_xy[i], anchor_xy[a + i]);
        let (x1, y1, x2, y2) = (ax - dist[0], ay - dist[1], ax + dist[2], ay + dist[3]);
        let s = strides[i];
        out[i] = (x1 + x2) / 2.0 * s;
        out[a + i] = (y1 + y2) / 2.0 * s;
        out[2 * a + i] = (x2 - x1) * s;
        out[3 * a + i] = (y2 - y1) * s;
    }
    for (o, l) in out[4 * a..].iter_mut().zip(cls_logits) {
        *o = 1.0 / (1.0 + fast_exp(-l));
    }
    out
}

/// Intersection over union of two x1y1x2y2 boxes (0 when either is empty).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area_a = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0);
    let area_b = (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    let union = area_a + area_b - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Picks, for every anchor, its best class; keeps those above `conf`. `raw` is the row-major
/// `[4 + nc, anchors]` output (batch 1), boxes as cx, cy, w, h.
pub fn decode(raw: &[f32], nc: usize, conf: f32) -> Vec<Candidate> {
    let rows = 4 + nc;
    if nc == 0 || raw.len() % rows != 0 {
        return Vec::new();
    }
    let a = raw.len() / rows;
    let mut out = Vec::new();
    for i in 0..a {
        let mut best = 0usize;
        let mut best_s = f32::NEG_INFINITY;
        for c in 0..nc {
            let s = raw[(4 + c) * a + i];
            if s > best_s {
                best_s = s;
                best = c;
            }
        }
        // Ultralytics keeps score > conf (strict).
        if best_s > conf {
            let (cx, cy, w, h) = (raw[i], raw[a + i], raw[2 * a + i], raw[3 * a + i]);
            out.push(Candidate { class_id: best, score: best_s, bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0] });
        }
    }
    out
}

/// Greedy class-wise NMS: highest score first, drop same-class boxes with IoU > `iou_thr`.
/// Returns at most `max_det` boxes, best first.
pub fn nms(mut cands: Vec<Candidate>, iou_thr: f32, max_det: usize) -> Vec<Candidate> {
    // Stable sort: ties keep anchor order, like torchvision on CPU in practice.
    cands.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Candidate> = Vec::new();
    for c in cands {
        if keep.len() >= max_det {
            break;
        }
        let suppressed = keep.iter().any(|k| k.class_id == c.class_id && iou(&k.bbox, &c.bbox) > iou_thr);
        if !suppressed {
            keep.push(c);
        }
    }
    keep
}

/// Maps an x1y1x2y2 box from letterboxed input pixels back to original pixels, clipped to the
/// image (Ultralytics `scale_boxes`).
pub fn unletterbox(b: &[f32; 4], lb: &Letterbox) -> [f32; 4] {
    let w = lb.src_w as f32;
    let h = lb.src_h as f32;
    let fx = |v: f32| ((v - lb.pad_left as f32) / lb.scale).clamp(0.0, w);
    let fy = |v: f32| ((v - lb.pad_top as f32) / lb.scale).clamp(0.0, h);
    [fx(b[0]), fy(b[1]), fx(b[2]), fy(b[3])]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_for_two_tiny_levels() {
        let (xy, st) = make_anchors(&[(2, 2), (1, 1)], &[8, 16]);
        assert_eq!(xy, vec![0.5, 1.5, 0.5, 1.5, 0.5, 0.5, 0.5, 1.5, 1.5, 0.5]);
        assert_eq!(st, vec![8.0, 8.0, 8.0, 8.0, 16.0]);
    }

    #[test]
    fn dfl_decode_tiny() {
        // One anchor at (0.5, 0.5), stride 8, reg_max 2: a bin pair (0, 0) gives 0.5,
        // a strongly peaked pair (-30, 30) gives ~1.
        let box_logits = [0.0, 0.0, -30.0, 30.0, 0.0, 0.0, -30.0, 30.0];
        let cls = [0.0, 2.0];
        let out = dfl_decode(&box_logits, &cls, 2, 2, &[0.5, 0.5], &[8.0]);
        // lt = (0.5, ~1), rb = (0.5, ~1): x1 = 0, x2 = 1, y1 = -0.5, y2 = 1.5 (cells).
        let want = [4.0, 4.0, 8.0, 16.0, 0.5, 1.0 / (1.0 + (-2f32).exp())];
        for (g, w) in out.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{out:?}");
        }
    }

    #[test]
    fn iou_of_literal_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[10.0, 10.0, 20.0, 20.0]), 0.0);
        let v = iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]);
        assert!((v - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn decode_tiny_tensor() {
        // nc = 2, 3 anchors; layout [cx; cy; w; h; s0; s1] each of length 3.
        let raw = vec![
            10.0, 50.0, 90.0, // cx
            10.0, 50.0, 90.0, // cy
            4.0, 10.0, 2.0, // w
            4.0, 20.0, 2.0, // h
            0.9, 0.1, 0.2, // class 0
            0.3, 0.8, 0.25, // class 1
        ];
        let c = decode(&raw, 2, 0.25);
        assert_eq!(c.len(), 2, "third anchor's best (0.25) is not > 0.25");
        assert_eq!(c[0].class_id, 0);
        assert_eq!(c[0].bbox, [8.0, 8.0, 12.0, 12.0]);
        assert_eq!(c[1].class_id, 1);
        assert_eq!(c[1].bbox, [45.0, 40.0, 55.0, 60.0]);
        assert!(decode(&raw[..17], 2, 0.25).is_empty(), "ragged input decodes to nothing");
    }

    #[test]
    fn nms_is_class_wise() {
        let c = |class_id, score, bbox| Candidate { class_id, score, bbox };
        let cands = vec![
            c(0, 0.6, [1.0, 1.0, 11.0, 11.0]), // IoU 0.68 with the best: kept at 0.7
            c(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            c(0, 0.8, [0.0, 0.0, 10.0, 10.5]),   // IoU 0.95: suppressed
            c(1, 0.7, [0.0, 0.0, 10.0, 10.0]),   // other class: kept
            c(0, 0.5, [50.0, 50.0, 60.0, 60.0]), // far away: kept
        ];
        let k = nms(cands.clone(), 0.7, 300);
        let scores: Vec<f32> = k.iter().map(|k| k.score).collect();
        assert_eq!(scores, vec![0.9, 0.7, 0.6, 0.5]);
        assert_eq!(nms(cands.clone(), 0.5, 300).len(), 3);
        assert_eq!(nms(cands, 0.7, 2).len(), 2);
    }

    #[test]
    fn unletterbox_literal() {
        // 1280x720 into 640: scale 0.5, 640x360, vertical padding 140 each side.
        let lb = Letterbox { scale: 0.5, pad_left: 0, pad_top: 140, src_w: 1280, src_h: 720, size: 640 };
        assert_eq!(unletterbox(&[10.0, 150.0, 20.0, 160.0], &lb), [20.0, 20.0, 40.0, 40.0]);
        // Boxes reaching into the padding are clipped to the image.
        assert_eq!(unletterbox(&[-5.0, 100.0, 700.0, 600.0], &lb), [0.0, 0.0, 1280.0, 720.0]);
    }
}
