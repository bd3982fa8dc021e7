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

/// One detection level's head outputs for one image: `boxes` `[4 * reg_max, n]` (left, top,
/// right, bottom; `reg_max` bins each) and `classes` `[nc, n]`, `n` anchors row-major.
#[derive(Debug, Clone, Copy)]
pub struct LevelLogits<'a> {
    pub boxes: &'a [f32],
    pub classes: &'a [f32],
}

/// Anchors per decode task: the DFL arithmetic runs over this many consecutive anchors at a time
/// (contiguous in each bin's row, so it vectorises), and the tasks run in parallel.
const DECODE_CHUNK: usize = 256;

/// DFL box decode + sigmoid, the tail of the Ultralytics `Detect` head, for one image, straight
/// from the levels' outputs (never concatenated). `anchor_xy`/`strides` from [`make_anchors`]
/// for the same levels. Returns the `[4 + nc, A]` network output: cx, cy, w, h in input pixels,
/// then class probabilities. None when the shapes disagree: never an output of zeros, which
/// would read as "nothing detected" (and so nothing to blur).
pub fn dfl_decode(levels: &[LevelLogits], nc: usize, reg_max: usize, anchor_xy: &[f32], strides: &[f32]) -> Option<Vec<f32>> {
    use crate::vision::conv_kernel::fast_exp;
    use rayon::prelude::*;
    let a = strides.len();
    let sizes: Vec<usize> = levels.iter().map(|l| l.classes.len() / nc.max(1)).collect();
    let consistent = levels.iter().zip(&sizes).all(|(l, &n)| l.classes.len() == nc * n && l.boxes.len() == 4 * reg_max * n);
    if nc == 0 || reg_max == 0 || !consistent || sizes.iter().sum::<usize>() != a || anchor_xy.len() != 2 * a {
        return None;
    }
    let mut out = vec![0f32; (4 + nc) * a];
    let (head, cls_out) = out.split_at_mut(4 * a);
    // Class probabilities: one output row per class, the levels' rows one after another.
    cls_out.par_chunks_mut(a).enumerate().for_each(|(c, row)| {
        let mut o = 0;
        for (l, &n) in levels.iter().zip(&sizes) {
            for (d, x) in row[o..o + n].iter_mut().zip(&l.classes[c * n..(c + 1) * n]) {
                *d = 1.0 / (1.0 + fast_exp(-x));
            }
            o += n;
        }
    });
    // Boxes: the four output rows, chunk by chunk of anchors.
    let (r0, rest) = head.split_at_mut(a);
    let (r1, rest) = rest.split_at_mut(a);
    let (r2, r3) = rest.split_at_mut(a);
    let rows = r0.par_chunks_mut(DECODE_CHUNK).zip(r1.par_chunks_mut(DECODE_CHUNK)).zip(r2.par_chunks_mut(DECODE_CHUNK));
    rows.zip(r3.par_chunks_mut(DECODE_CHUNK)).enumerate().for_each(|(k, (((cx, cy), bw), bh))| {
        let (i0, len) = (k * DECODE_CHUNK, cx.len());
        // Distances left, top, right, bottom of anchors i0..i0 + len, in cells.
        let mut dist = [[0f32; DECODE_CHUNK]; 4];
        let mut start = 0;
        for (l, &n) in levels.iter().zip(&sizes) {
            let (s, e) = (i0.max(start), (i0 + len).min(start + n));
            if s < e {
                let (p0, t0, m) = (s - start, s - i0, e - s);
                for (side, d) in dist.iter_mut().enumerate() {
                    let bin = |j: usize| &l.boxes[(side * reg_max + j) * n + p0..][..m];
                    // Softmax over the bins (max-subtracted, like PyTorch), then the expectation.
                    let mut mx = [f32::NEG_INFINITY; DECODE_CHUNK];
                    for j in 0..reg_max {
                        mx[..m].iter_mut().zip(bin(j)).for_each(|(a, b)| *a = a.max(*b));
                    }
                    let (mut sum, mut ex) = ([0f32; DECODE_CHUNK], [0f32; DECODE_CHUNK]);
                    for j in 0..reg_max {
                        for (((s, x), v), mx) in sum[..m].iter_mut().zip(&mut ex[..m]).zip(bin(j)).zip(&mx[..m]) {
                            let e = fast_exp(v - mx);
                            *s += e;
                            *x += e * j as f32;
                        }
                    }
                    for ((d, s), x) in d[t0..t0 + m].iter_mut().zip(&sum[..m]).zip(&ex[..m]) {
                        *d = x / s;
                    }
                }
            }
            start += n;
        }
        for t in 0..len {
            let i = i0 + t;
            let (ax, ay, st) = (anchor_xy[i], anchor_xy[a + i], strides[i]);
            let (x1, y1, x2, y2) = (ax - dist[0][t], ay - dist[1][t], ax + dist[2][t], ay + dist[3][t]);
            cx[t] = (x1 + x2) / 2.0 * st;
            cy[t] = (y1 + y2) / 2.0 * st;
            bw[t] = (x2 - x1) * st;
            bh[t] = (y2 - y1) * st;
        }
    });
    Some(out)
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
        let level = LevelLogits { boxes: &box_logits, classes: &cls };
        let out = dfl_decode(&[level], 2, 2, &[0.5, 0.5], &[8.0]).expect("consistent shapes");
        // lt = (0.5, ~1), rb = (0.5, ~1): x1 = 0, x2 = 1, y1 = -0.5, y2 = 1.5 (cells).
        let want = [4.0, 4.0, 8.0, 16.0, 0.5, 1.0 / (1.0 + (-2f32).exp())];
        for (g, w) in out.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{out:?}");
        }
        assert!(dfl_decode(&[level], 2, 3, &[0.5, 0.5], &[8.0]).is_none(), "shapes are checked");
    }

    /// Several levels, more anchors than one decode chunk and a chunk that straddles two
    /// levels: the same as a naive per-anchor decode of the concatenated levels.
    #[test]
    fn dfl_decode_levels_equal_the_naive_decode() {
        let (nc, r) = (3, 16);
        let sizes = [(20, 20), (10, 10), (5, 5)];
        let (xy, st) = make_anchors(&sizes, &[8, 16, 32]);
        let a = st.len();
        let mut seed = 7u32;
        let mut rnd = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 8) as f32 / (1 << 24) as f32 * 16.0 - 8.0
                })
                .collect()
        };
        let data: Vec<(Vec<f32>, Vec<f32>)> = sizes.iter().map(|(h, w)| (rnd(4 * r * h * w), rnd(nc * h * w))).collect();
        let levels: Vec<LevelLogits> = data.iter().map(|(b, c)| LevelLogits { boxes: b, classes: c }).collect();
        let got = dfl_decode(&levels, nc, r, &xy, &st).expect("consistent shapes");
        // Naive: anchor i of the concatenation is level l's position p.
        let mut i = 0;
        for (l, (b, c)) in data.iter().enumerate() {
            let n = sizes[l].0 * sizes[l].1;
            for p in 0..n {
                let d: Vec<f64> = (0..4)
                    .map(|side| {
                        let z: Vec<f64> = (0..r).map(|j| f64::from(b[(side * r + j) * n + p])).collect();
                        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
                        e.iter().enumerate().map(|(j, v)| v * j as f64).sum::<f64>() / e.iter().sum::<f64>()
                    })
                    .collect();
                let (ax, ay, s) = (f64::from(xy[i]), f64::from(xy[a + i]), f64::from(st[i]));
                let (x1, y1, x2, y2) = (ax - d[0], ay - d[1], ax + d[2], ay + d[3]);
                let want = [(x1 + x2) / 2.0 * s, (y1 + y2) / 2.0 * s, (x2 - x1) * s, (y2 - y1) * s];
                for (row, w) in want.iter().enumerate() {
                    assert!((f64::from(got[row * a + i]) - w).abs() < 1e-3, "anchor {i} row {row}");
                }
                for k in 0..nc {
                    let w = 1.0 / (1.0 + (-f64::from(c[k * n + p])).exp());
                    assert!((f64::from(got[(4 + k) * a + i]) - w).abs() < 1e-6, "anchor {i} class {k}");
                }
                i += 1;
            }
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
