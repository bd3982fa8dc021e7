//! The YOLOv8 detection network (Ultralytics `yolov8.yaml`, any scale n/s/m/l/x, any class
//! count), written in candle's block style: one struct per block with `load(vb)` + `forward`.
//!
//! Weight names are Ultralytics' own (`model.N.cv1.conv.weight`, ...), so imported files load
//! without renaming. Widths and depths are read from the weight shapes, never from a scale
//! table: a dealer's custom-width model loads the same way. Convolutions come either fused
//! (`conv.weight` + `conv.bias`, as in ONNX exports) or un-fused (`conv.weight` + `bn.*`, as in
//! training checkpoints); un-fused ones are folded once at load time so the forward pass is the
//! same for both. The output is exactly the ONNX export's `output0`: `[1, 4 + nc, anchors]` with
//! `cx, cy, w, h` in input pixels and sigmoid class scores.
//!
//! The blocks' forward passes are written once, over [`Ops`]: candle tensors on any device
//! ([`Candle`], the CUDA path), or our blocked CPU activations ([`Blocked`], `blocked.rs` and
//! `conv_kernel.rs`), which CPU f32 runs whenever every split and concatenation falls on whole
//! channel blocks (true of every Ultralytics scale).

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use tracing::{span, Level};

use crate::vision::blocked::{on_awake_pool, Act, LANES};
use crate::vision::conv_kernel::BlockConv;
use crate::vision::postprocess::{dfl_decode, make_anchors, LevelLogits};

type CResult<T> = candle_core::Result<T>;

/// Ultralytics' DFL bin count for every YOLOv8 head.
const REG_MAX: usize = 16;
/// Strides of the three detection levels P3/P4/P5.
const STRIDES: [usize; 3] = [8, 16, 32];

/// A plain convolution layer (with bias) from fused or un-fused weights.
/// `prefix` holds `weight`/`bias` (fused) or the module holds `conv.weight` + `bn.*` (un-fused).
fn load_conv2d(vb: &VarBuilder, stride: usize, bn_eps: f64) -> CResult<Conv2d> {
    let weight = vb.get_unchecked("conv.weight")?;
    let (out_c, _in_c, k, _k2) = weight.dims4()?;
    let cfg = Conv2dConfig { padding: k / 2, stride, ..Default::default() };
    if vb.contains_tensor("conv.bias") {
        let bias = vb.get_unchecked("conv.bias")?;
        return Ok(Conv2d::new(weight, Some(bias), cfg));
    }
    // Un-fused training checkpoint: fold BatchNorm (eval mode) into the convolution:
    // w' = w * gamma / sqrt(var + eps), b' = beta - mean * gamma / sqrt(var + eps).
    let gamma = vb.get_unchecked("bn.weight")?;
    let beta = vb.get_unchecked("bn.bias")?;
    let mean = vb.get_unchecked("bn.running_mean")?;
    let var = vb.get_unchecked("bn.running_var")?;
    let scale = (gamma / (var + bn_eps)?.sqrt()?)?;
    let weight = weight.broadcast_mul(&scale.reshape((out_c, 1, 1, 1))?)?;
    let bias = (beta - (mean * &scale)?)?;
    Ok(Conv2d::new(weight.contiguous()?, Some(bias), cfg))
}

/// A convolution (+ SiLU): candle's `Conv2d` for any device and, with f32 weights on the CPU,
/// our blocked kernel (`None` where it does not apply: other devices, or a shape it does not
/// take, such as a 5x5 kernel).
#[derive(Debug, Clone)]
pub struct ConvBlock {
    conv: Conv2d,
    cpu: Option<BlockConv>,
    silu: bool,
    span: tracing::Span,
}

impl ConvBlock {
    /// Ultralytics `Conv`: conv (+ folded BN) + SiLU, over a layer's output.
    pub fn load(vb: VarBuilder, stride: usize, bn_eps: f64) -> CResult<Self> {
        Self::new(load_conv2d(&vb, stride, bn_eps)?, stride, true, LANES)
    }

    /// The first `Conv`, over the network's input image (one channel to a block).
    fn load_stem(vb: VarBuilder, stride: usize, bn_eps: f64) -> CResult<Self> {
        Self::new(load_conv2d(&vb, stride, bn_eps)?, stride, true, 1)
    }

    fn new(conv: Conv2d, stride: usize, silu: bool, lanes_in: usize) -> CResult<Self> {
        let w = conv.weight();
        let cpu = if w.device().is_cpu() && w.dtype() == DType::F32 {
            let (co, ci, k, k2) = w.dims4()?;
            let bias = match conv.bias() {
                Some(b) => b.to_vec1::<f32>()?,
                None => vec![0f32; co],
            };
            let weights = w.flatten_all()?.to_vec1::<f32>()?;
            (k == k2).then(|| BlockConv::new(&weights, &bias, co, ci, k, stride, silu, lanes_in).ok()).flatten()
        } else {
            None
        };
        Ok(Self { conv, cpu, silu, span: span!(Level::TRACE, "conv") })
    }

    pub fn out_channels(&self) -> usize {
        self.conv.weight().dim(0).unwrap_or(0)
    }

    fn has_cpu_kernel(&self) -> bool {
        self.cpu.is_some()
    }
}

/// The operations YOLOv8's blocks are made of, on one representation of activations.
pub trait Ops {
    type T;
    /// `conv(cat(parts, channels))`, SiLU for a `Conv` block, then `+ res`.
    fn conv(&self, c: &ConvBlock, parts: &[&Self::T], res: Option<&Self::T>) -> CResult<Self::T>;
    /// The two halves of the channels (C2f's split).
    fn halves(&self, t: &Self::T) -> CResult<[Self::T; 2]>;
    fn upsample2x(&self, t: &Self::T) -> CResult<Self::T>;
    /// `nn.MaxPool2d(5, 1, 2)`.
    fn max_pool5(&self, t: &Self::T) -> CResult<Self::T>;
    /// Height and width.
    fn size(&self, t: &Self::T) -> CResult<(usize, usize)>;
    /// The network's `[4 + nc, anchors]` output (one image, row-major) from each level's box and
    /// class logits.
    fn decode(&self, nc: usize, sizes: &[(usize, usize)], boxes: &[Self::T], scores: &[Self::T]) -> CResult<Vec<f32>>;
}

/// Candle tensors `[1, c, h, w]` on any device.
pub struct Candle;

impl Ops for Candle {
    type T = Tensor;

    fn conv(&self, c: &ConvBlock, parts: &[&Tensor], res: Option<&Tensor>) -> CResult<Tensor> {
        let _e = c.span.enter();
        let y = match parts {
            [x] => c.conv.forward(x)?,
            _ => c.conv.forward(&Tensor::cat(parts, 1)?)?,
        };
        let y = if c.silu { y.silu()? } else { y };
        match res {
            Some(r) => y + r,
            None => Ok(y),
        }
    }

    fn halves(&self, t: &Tensor) -> CResult<[Tensor; 2]> {
        let c = t.dim(1)? / 2;
        Ok([t.narrow(1, 0, c)?, t.narrow(1, c, c)?])
    }

    fn upsample2x(&self, t: &Tensor) -> CResult<Tensor> {
        let (_, _, h, w) = t.dims4()?;
        t.upsample_nearest2d(h * 2, w * 2)
    }

    fn max_pool5(&self, t: &Tensor) -> CResult<Tensor> {
        max_pool5_same(t)
    }

    fn size(&self, t: &Tensor) -> CResult<(usize, usize)> {
        let (_, _, h, w) = t.dims4()?;
        Ok((h, w))
    }

    fn decode(&self, nc: usize, sizes: &[(usize, usize)], boxes: &[Tensor], scores: &[Tensor]) -> CResult<Vec<f32>> {
        let dev = boxes.first().map(|t| t.device().clone()).unwrap_or(Device::Cpu);
        let (anchor_xy, stride) = make_anchors(sizes, &STRIDES);
        let a = stride.len();
        let flat = |ts: &[Tensor], c: usize| -> CResult<Tensor> {
            let ts: Vec<Tensor> = ts.iter().map(|t| t.reshape((1, c, ()))).collect::<CResult<_>>()?;
            Tensor::cat(&ts, 2)
        };
        let boxes = flat(boxes, 4 * REG_MAX)?;
        let scores = flat(scores, nc)?;

        // DFL: softmax over the 16 bins of each side, expectation with 0..15.
        let bins = candle_nn::ops::softmax(&boxes.reshape((1, 4, REG_MAX, a))?, 2)?;
        let proj = Tensor::arange(0f32, REG_MAX as f32, &dev)?.to_dtype(bins.dtype())?.reshape((1, 1, REG_MAX, 1))?;
        let dist = bins.broadcast_mul(&proj)?.sum(2)?; // [1, 4, a]: left, top, right, bottom

        let anchors = Tensor::from_vec(anchor_xy, (1, 2, a), &dev)?.to_dtype(dist.dtype())?;
        let stride = Tensor::from_vec(stride, (1, 1, a), &dev)?.to_dtype(dist.dtype())?;
        let lt = dist.narrow(1, 0, 2)?;
        let rb = dist.narrow(1, 2, 2)?;
        let x1y1 = anchors.broadcast_sub(&lt)?;
        let x2y2 = anchors.broadcast_add(&rb)?;
        let cxy = ((&x1y1 + &x2y2)? / 2.0)?;
        let wh = (x2y2 - x1y1)?;
        let dbox = Tensor::cat(&[cxy, wh], 1)?.broadcast_mul(&stride)?;
        let out = Tensor::cat(&[dbox, candle_nn::ops::sigmoid(&scores)?], 1)?;
        out.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
    }
}

/// Our blocked CPU activations (`blocked.rs`), convolutions by `conv_kernel.rs`.
pub struct Blocked;

impl Ops for Blocked {
    type T = Act;

    fn conv(&self, c: &ConvBlock, parts: &[&Act], res: Option<&Act>) -> CResult<Act> {
        let _e = c.span.enter();
        let Some(k) = &c.cpu else {
            candle_core::bail!("convolution without a CPU kernel on the blocked path");
        };
        k.forward(parts, res).map_err(candle_core::Error::wrap)
    }

    fn halves(&self, t: &Act) -> CResult<[Act; 2]> {
        t.halves().ok_or_else(|| candle_core::Error::Msg(format!("{} channels do not split into whole blocks", t.c())))
    }

    fn upsample2x(&self, t: &Act) -> CResult<Act> {
        Ok(t.upsample2x())
    }

    fn max_pool5(&self, t: &Act) -> CResult<Act> {
        Ok(t.max_pool5())
    }

    fn size(&self, t: &Act) -> CResult<(usize, usize)> {
        Ok((t.h(), t.w()))
    }

    fn decode(&self, nc: usize, sizes: &[(usize, usize)], boxes: &[Act], scores: &[Act]) -> CResult<Vec<f32>> {
        let (anchor_xy, stride) = make_anchors(sizes, &STRIDES);
        let boxes: Vec<Vec<f32>> = boxes.iter().map(Act::to_chw).collect();
        let scores: Vec<Vec<f32>> = scores.iter().map(Act::to_chw).collect();
        let levels: Vec<LevelLogits> = boxes.iter().zip(&scores).map(|(b, c)| LevelLogits { boxes: b, classes: c }).collect();
        dfl_decode(&levels, nc, REG_MAX, &anchor_xy, &stride)
            .ok_or_else(|| candle_core::Error::Msg("detect head: the levels' outputs do not match the anchors".into()))
    }
}

/// Ultralytics `Bottleneck` with k=(3,3), e=1.0: two 3x3 convs, optional residual.
#[derive(Debug, Clone)]
pub struct Bottleneck {
    cv1: ConvBlock,
    cv2: ConvBlock,
    residual: bool,
    span: tracing::Span,
}

impl Bottleneck {
    pub fn load(vb: VarBuilder, shortcut: bool, bn_eps: f64) -> CResult<Self> {
        let cv1 = ConvBlock::load(vb.pp("cv1"), 1, bn_eps)?;
        let cv2 = ConvBlock::load(vb.pp("cv2"), 1, bn_eps)?;
        Ok(Self { cv1, cv2, residual: shortcut, span: span!(Level::TRACE, "bottleneck") })
    }

    fn forward<O: Ops>(&self, o: &O, x: &O::T) -> CResult<O::T> {
        let _e = self.span.enter();
        let y = o.conv(&self.cv1, &[x], None)?;
        o.conv(&self.cv2, &[&y], self.residual.then_some(x))
    }
}

/// Ultralytics `C2f`: split, n bottlenecks chained on the second half, concat all, 1x1 conv.
#[derive(Debug, Clone)]
pub struct C2f {
    cv1: ConvBlock,
    cv2: ConvBlock,
    m: Vec<Bottleneck>,
    span: tracing::Span,
}

impl C2f {
    /// The bottleneck count (depth) is read from the weights present.
    pub fn load(vb: VarBuilder, shortcut: bool, bn_eps: f64) -> CResult<Self> {
        let cv1 = ConvBlock::load(vb.pp("cv1"), 1, bn_eps)?;
        let cv2 = ConvBlock::load(vb.pp("cv2"), 1, bn_eps)?;
        let mut m = Vec::new();
        while vb.contains_tensor(&format!("m.{}.cv1.conv.weight", m.len())) {
            m.push(Bottleneck::load(vb.pp(format!("m.{}", m.len())), shortcut, bn_eps)?);
        }
        if m.is_empty() {
            candle_core::bail!("C2f block {} has no bottlenecks", vb.prefix());
        }
        Ok(Self { cv1, cv2, m, span: span!(Level::TRACE, "c2f") })
    }

    /// The block applied to the channel-concatenation of `parts` (the neck's concat inputs are
    /// never built: the first conv reads the parts).
    fn forward<O: Ops>(&self, o: &O, parts: &[&O::T]) -> CResult<O::T> {
        let _e = self.span.enter();
        let y = o.conv(&self.cv1, parts, None)?;
        let mut ys: Vec<O::T> = o.halves(&y)?.into();
        for m in &self.m {
            let next = m.forward(o, &ys[ys.len() - 1])?;
            ys.push(next);
        }
        let refs: Vec<&O::T> = ys.iter().collect();
        o.conv(&self.cv2, &refs, None)
    }

    fn convs(&self) -> impl Iterator<Item = &ConvBlock> {
        [&self.cv1, &self.cv2].into_iter().chain(self.m.iter().flat_map(|b| [&b.cv1, &b.cv2]))
    }

    /// Whether the split falls on a whole channel block.
    fn splits_on_blocks(&self) -> bool {
        (self.cv1.out_channels() / 2) % LANES == 0
    }
}

/// Max-pool, kernel 5, stride 1, padding 2 with -inf padding, exactly like PyTorch's
/// `nn.MaxPool2d(5, 1, 2)`. Zero padding would be wrong: SPPF's input is post-SiLU and can be
/// negative, and an earlier port whose borders saw zeros moved boxes by up to 3 px.
pub fn max_pool5_same(xs: &Tensor) -> CResult<Tensor> {
    let (b, c, h, w) = xs.dims4()?;
    let dev = xs.device();
    let ninf_w = Tensor::full(f32::NEG_INFINITY, (b, c, h, 2), dev)?.to_dtype(xs.dtype())?;
    let xs = Tensor::cat(&[&ninf_w, xs, &ninf_w], 3)?;
    let ninf_h = Tensor::full(f32::NEG_INFINITY, (b, c, 2, w + 4), dev)?.to_dtype(xs.dtype())?;
    let xs = Tensor::cat(&[&ninf_h, &xs, &ninf_h], 2)?;
    xs.max_pool2d_with_stride(5, 1)
}

/// Ultralytics `SPPF`: 1x1 conv, three chained 5x5 max-pools, concat, 1x1 conv.
#[derive(Debug, Clone)]
pub struct Sppf {
    cv1: ConvBlock,
    cv2: ConvBlock,
    span: tracing::Span,
}

impl Sppf {
    pub fn load(vb: VarBuilder, bn_eps: f64) -> CResult<Self> {
        let cv1 = ConvBlock::load(vb.pp("cv1"), 1, bn_eps)?;
        let cv2 = ConvBlock::load(vb.pp("cv2"), 1, bn_eps)?;
        Ok(Self { cv1, cv2, span: span!(Level::TRACE, "sppf") })
    }

    fn forward<O: Ops>(&self, o: &O, xs: &O::T) -> CResult<O::T> {
        let _e = self.span.enter();
        let x = o.conv(&self.cv1, &[xs], None)?;
        let y1 = o.max_pool5(&x)?;
        let y2 = o.max_pool5(&y1)?;
        let y3 = o.max_pool5(&y2)?;
        o.conv(&self.cv2, &[&x, &y1, &y2, &y3], None)
    }
}

/// Ultralytics' `Sequential(Conv, Conv, Conv2d)` branch of the head.
#[derive(Debug, Clone)]
struct HeadBranch {
    a: ConvBlock,
    b: ConvBlock,
    /// The plain `Conv2d`: no activation.
    out: ConvBlock,
}

impl HeadBranch {
    fn load(vb: VarBuilder, bn_eps: f64) -> CResult<Self> {
        let a = ConvBlock::load(vb.pp("0"), 1, bn_eps)?;
        let b = ConvBlock::load(vb.pp("1"), 1, bn_eps)?;
        let vb2 = vb.pp("2");
        let out = Conv2d::new(vb2.get_unchecked("weight")?, Some(vb2.get_unchecked("bias")?), Conv2dConfig::default());
        Ok(Self { a, b, out: ConvBlock::new(out, 1, false, LANES)? })
    }

    fn forward<O: Ops>(&self, o: &O, x: &O::T) -> CResult<O::T> {
        let y = o.conv(&self.a, &[x], None)?;
        let y = o.conv(&self.b, &[&y], None)?;
        o.conv(&self.out, &[&y], None)
    }
}

/// Ultralytics `Detect` head (legacy v8 form): per level a box branch (4 x 16 DFL bins) and a
/// class branch, then DFL decode to `cx, cy, w, h` in input pixels and sigmoid scores.
#[derive(Debug, Clone)]
pub struct DetectHead {
    cv2: Vec<HeadBranch>,
    cv3: Vec<HeadBranch>,
    nc: usize,
    span: tracing::Span,
}

impl DetectHead {
    pub fn load(vb: VarBuilder, bn_eps: f64) -> CResult<Self> {
        let mut cv2 = Vec::new();
        let mut cv3 = Vec::new();
        for i in 0..STRIDES.len() {
            cv2.push(HeadBranch::load(vb.pp(format!("cv2.{i}")), bn_eps)?);
            cv3.push(HeadBranch::load(vb.pp(format!("cv3.{i}")), bn_eps)?);
        }
        if cv2.iter().any(|b| b.out.out_channels() != 4 * REG_MAX) {
            candle_core::bail!("box branch is not 4 x {REG_MAX} DFL bins");
        }
        let nc = cv3[0].out.out_channels();
        if nc == 0 || cv3.iter().any(|b| b.out.out_channels() != nc) {
            candle_core::bail!("class branches disagree on the class count");
        }
        Ok(Self { cv2, cv3, nc, span: span!(Level::TRACE, "detect") })
    }

    pub fn num_classes(&self) -> usize {
        self.nc
    }

    fn forward<O: Ops>(&self, o: &O, levels: [&O::T; 3]) -> CResult<Vec<f32>> {
        let _e = self.span.enter();
        let mut boxes = Vec::with_capacity(3);
        let mut scores = Vec::with_capacity(3);
        let mut sizes = Vec::with_capacity(3);
        for (i, x) in levels.into_iter().enumerate() {
            sizes.push(o.size(x)?);
            boxes.push(self.cv2[i].forward(o, x)?);
            scores.push(self.cv3[i].forward(o, x)?);
        }
        o.decode(self.nc, &sizes, &boxes, &scores)
    }

    fn convs(&self) -> impl Iterator<Item = &ConvBlock> {
        self.cv2.iter().chain(&self.cv3).flat_map(|b| [&b.a, &b.b, &b.out])
    }
}

/// The whole YOLOv8 detection model.
#[derive(Debug, Clone)]
pub struct YoloV8 {
    b0: ConvBlock,
    b1: ConvBlock,
    b2: C2f,
    b3: ConvBlock,
    b4: C2f,
    b5: ConvBlock,
    b6: C2f,
    b7: ConvBlock,
    b8: C2f,
    b9: Sppf,
    b12: C2f,
    b15: C2f,
    b16: ConvBlock,
    b18: C2f,
    b19: ConvBlock,
    b21: C2f,
    head: DetectHead,
    /// Whether CPU f32 runs on [`Blocked`] (see [`YoloV8::fits_blocks`]).
    blocked: bool,
    span: tracing::Span,
}

impl YoloV8 {
    /// Loads from Ultralytics names rooted at `model.` (the caller passes `vb.pp("model")`).
    pub fn load(vb: VarBuilder, bn_eps: f64) -> CResult<Self> {
        let c = |i: usize| vb.pp(i.to_string());
        let mut net = Self {
            b0: ConvBlock::load_stem(c(0), 2, bn_eps)?,
            b1: ConvBlock::load(c(1), 2, bn_eps)?,
            b2: C2f::load(c(2), true, bn_eps)?,
            b3: ConvBlock::load(c(3), 2, bn_eps)?,
            b4: C2f::load(c(4), true, bn_eps)?,
            b5: ConvBlock::load(c(5), 2, bn_eps)?,
            b6: C2f::load(c(6), true, bn_eps)?,
            b7: ConvBlock::load(c(7), 2, bn_eps)?,
            b8: C2f::load(c(8), true, bn_eps)?,
            b9: Sppf::load(c(9), bn_eps)?,
            b12: C2f::load(c(12), false, bn_eps)?,
            b15: C2f::load(c(15), false, bn_eps)?,
            b16: ConvBlock::load(c(16), 2, bn_eps)?,
            b18: C2f::load(c(18), false, bn_eps)?,
            b19: ConvBlock::load(c(19), 2, bn_eps)?,
            b21: C2f::load(c(21), false, bn_eps)?,
            head: DetectHead::load(c(22), bn_eps)?,
            blocked: false,
            span: span!(Level::TRACE, "yolov8"),
        };
        net.blocked = net.fits_blocks();
        if !net.blocked && net.b0.conv.weight().device().is_cpu() {
            tracing::warn!(
                "this network's widths do not split into blocks of {LANES} channels: it runs on candle's slower CPU convolution"
            );
        }
        Ok(net)
    }

    /// Whether every convolution has a CPU kernel and every split and concatenation falls on
    /// whole channel blocks: C2f's halves, SPPF's pooled copies, and the first part of each
    /// neck concatenation (the upsampled P5 and P4 path, and the stride-2 convs' outputs).
    fn fits_blocks(&self) -> bool {
        let c2fs = [&self.b2, &self.b4, &self.b6, &self.b8, &self.b12, &self.b15, &self.b18, &self.b21];
        let convs = [&self.b0, &self.b1, &self.b3, &self.b5, &self.b7, &self.b16, &self.b19, &self.b9.cv1, &self.b9.cv2];
        let whole = |c: &ConvBlock| c.out_channels() % LANES == 0;
        convs.iter().copied().chain(c2fs.iter().flat_map(|b| b.convs())).chain(self.head.convs()).all(ConvBlock::has_cpu_kernel)
            && c2fs.iter().all(|b| b.splits_on_blocks())
            && [&self.b9.cv1, &self.b9.cv2, &self.b12.cv2, &self.b16, &self.b19].into_iter().all(whole)
    }

    pub fn num_classes(&self) -> usize {
        self.head.num_classes()
    }

    /// Ultralytics scale letter from the stem width (16/32/48/64/80 channels).
    pub fn scale_from_stem(stem_out: usize) -> &'static str {
        match stem_out {
            16 => "n",
            32 => "s",
            48 => "m",
            64 => "l",
            80 => "x",
            _ => "custom",
        }
    }

    pub fn stem_channels(&self) -> usize {
        self.b0.out_channels()
    }

    /// One image `chw` (`[3, s, s]` RGB 0..1, `s` a multiple of 32) on `dev`. Returns the
    /// `[4 + nc, anchors]` output, row-major (ONNX Runtime's `output0` without its batch).
    pub fn forward_chw(&self, chw: &[f32], s: usize, dev: &Device) -> CResult<Vec<f32>> {
        if dev.is_cpu() && self.blocked {
            let Some(x) = Act::from_chw(chw, 3, s, s, 1) else {
                candle_core::bail!("input has {} values, not 3x{s}x{s}", chw.len());
            };
            // On a worker of rayon's pool (from any other thread, such as the photo worker,
            // each of the ~80 fork-joins was a hand-off to the pool and a wait on a latch),
            // with the other workers kept awake between the layers.
            return on_awake_pool(|| self.run(&Blocked, x));
        }
        let x = Tensor::from_slice(chw, (1, 3, s, s), dev)?.to_dtype(compute_dtype(dev))?;
        self.run(&Candle, x)
    }

    /// `xs`: `[1, 3, S, S]` RGB 0..1, S a multiple of 32. Returns `[1, 4 + nc, anchors]`.
    pub fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        if b != 1 || c != 3 || h != w {
            candle_core::bail!("input {b}x{c}x{h}x{w}: one square RGB image");
        }
        let out = if xs.device().is_cpu() && self.blocked {
            self.forward_chw(&xs.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?, h, xs.device())?
        } else {
            self.run(&Candle, xs.clone())?
        };
        let rows = 4 + self.num_classes();
        let n = out.len() / rows;
        Tensor::from_vec(out, (1, rows, n), xs.device())
    }

    /// The network on one representation.
    ///
    /// Each step runs inside a TRACE span `block` whose `i` is the Ultralytics layer index
    /// (`model.i` in the weights and in ONNX node names), so a profiler can put our time per
    /// block beside ONNX Runtime's (`cargo bench --bench vision` with `BENCH_PROFILE=1`). The
    /// concatenations 11/14/17/20 have no step of their own: their consumer reads the parts.
    fn run<O: Ops>(&self, o: &O, xs: O::T) -> CResult<Vec<f32>> {
        let _e = self.span.enter();
        fn block<R>(i: usize, f: impl FnOnce() -> R) -> R {
            let _b = span!(Level::TRACE, "block", i).entered();
            f()
        }
        let x = block(0, || o.conv(&self.b0, &[&xs], None))?;
        let x = block(1, || o.conv(&self.b1, &[&x], None))?;
        let x = block(2, || self.b2.forward(o, &[&x]))?;
        let x = block(3, || o.conv(&self.b3, &[&x], None))?;
        let p3 = block(4, || self.b4.forward(o, &[&x]))?;
        let x = block(5, || o.conv(&self.b5, &[&p3], None))?;
        let p4 = block(6, || self.b6.forward(o, &[&x]))?;
        let x = block(7, || o.conv(&self.b7, &[&p4], None))?;
        let x = block(8, || self.b8.forward(o, &[&x]))?;
        let p5 = block(9, || self.b9.forward(o, &x))?;
        let u = block(10, || o.upsample2x(&p5))?;
        let x12 = block(12, || self.b12.forward(o, &[&u, &p4]))?;
        let u = block(13, || o.upsample2x(&x12))?;
        let x15 = block(15, || self.b15.forward(o, &[&u, &p3]))?;
        let x = block(16, || o.conv(&self.b16, &[&x15], None))?;
        let x18 = block(18, || self.b18.forward(o, &[&x, &x12]))?;
        let x = block(19, || o.conv(&self.b19, &[&x18], None))?;
        let x21 = block(21, || self.b21.forward(o, &[&x, &p5]))?;
        block(22, || self.head.forward(o, [&x15, &x18, &x21]))
    }
}

/// The compute device: CPU, or the first CUDA GPU when built with the `cuda` feature and one
/// is present.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    {
        if let Ok(d) = Device::new_cuda(0) {
            return d;
        }
    }
    Device::Cpu
}

/// f32 on CPU (our fused kernels and the parity bounds are f32; candle's CPU f16 convolutions
/// are slower anyway); f16 on CUDA, where tensor cores make it the fast path.
pub fn compute_dtype(dev: &Device) -> DType {
    if dev.is_cuda() {
        DType::F16
    } else {
        DType::F32
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A YOLOv8n-shaped network (widths 16..256, depths 1/2/2/1, 3 classes) with seeded random
    /// weights, under Ultralytics' names.
    fn tiny_net() -> YoloV8 {
        let mut t: HashMap<String, Tensor> = HashMap::new();
        let mut seed = 1u64;
        let mut conv = |name: &str, co: usize, ci: usize, k: usize, plain: bool| {
            let n = co * ci * k * k;
            let scale = 1.5 / ((ci * k * k) as f32).sqrt();
            seed += 1;
            let vals: Vec<f32> = crate::vision::conv_kernel::test_values(n + co, seed).iter().map(|v| v * scale).collect();
            let (w, b) = vals.split_at(n);
            let p = if plain { name.to_string() } else { format!("{name}.conv") };
            t.insert(format!("{p}.weight"), Tensor::from_slice(w, (co, ci, k, k), &Device::Cpu).expect("weight"));
            t.insert(format!("{p}.bias"), Tensor::from_slice(b, co, &Device::Cpu).expect("bias"));
        };
        let c2f = |conv: &mut dyn FnMut(&str, usize, usize, usize, bool), i: usize, ci: usize, co: usize, n: usize| {
            let h = co / 2;
            conv(&format!("model.{i}.cv1"), 2 * h, ci, 1, false);
            for j in 0..n {
                conv(&format!("model.{i}.m.{j}.cv1"), h, h, 3, false);
                conv(&format!("model.{i}.m.{j}.cv2"), h, h, 3, false);
            }
            conv(&format!("model.{i}.cv2"), co, (2 + n) * h, 1, false);
        };
        conv("model.0", 16, 3, 3, false);
        conv("model.1", 32, 16, 3, false);
        c2f(&mut conv, 2, 32, 32, 1);
        conv("model.3", 64, 32, 3, false);
        c2f(&mut conv, 4, 64, 64, 2);
        conv("model.5", 128, 64, 3, false);
        c2f(&mut conv, 6, 128, 128, 2);
        conv("model.7", 256, 128, 3, false);
        c2f(&mut conv, 8, 256, 256, 1);
        conv("model.9.cv1", 128, 256, 1, false);
        conv("model.9.cv2", 256, 512, 1, false);
        c2f(&mut conv, 12, 384, 128, 1);
        c2f(&mut conv, 15, 192, 64, 1);
        conv("model.16", 64, 64, 3, false);
        c2f(&mut conv, 18, 192, 128, 1);
        conv("model.19", 128, 128, 3, false);
        c2f(&mut conv, 21, 384, 256, 1);
        for (i, ch) in [64, 128, 256].into_iter().enumerate() {
            for (branch, out) in [("cv2", 64), ("cv3", 3)] {
                conv(&format!("model.22.{branch}.{i}.0"), 64, ch, 3, false);
                conv(&format!("model.22.{branch}.{i}.1"), 64, 64, 3, false);
                conv(&format!("model.22.{branch}.{i}.2"), out, 64, 1, true);
            }
        }
        let vb = VarBuilder::from_tensors(t, DType::F32, &Device::Cpu);
        YoloV8::load(vb.pp("model"), 1e-3).expect("the tiny network loads")
    }

    /// The blocked CPU path (every split, concatenation, pool, upsample and the decode) gives
    /// what candle's own operations give on the same weights: the CUDA path's arithmetic.
    #[test]
    fn blocked_path_equals_candle_ops() {
        let net = tiny_net();
        assert!(net.blocked, "widths in whole blocks run on the blocked path");
        let s = 64;
        let img: Vec<f32> = (0..3 * s * s).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
        let got = net.forward_chw(&img, s, &Device::Cpu).expect("blocked forward");
        let x = Tensor::from_slice(&img, (1, 3, s, s), &Device::Cpu).expect("input");
        let want = net.run(&Candle, x).expect("candle forward");
        assert_eq!(got.len(), (4 + 3) * (64 + 16 + 4));
        assert_eq!(got.len(), want.len());
        let anchors = got.len() / 7;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let tol = if i < 4 * anchors { 1e-3 } else { 1e-5 };
            assert!((g - w).abs() < tol, "output {i} (row {}): {g} vs {w}", i / anchors);
        }
        // The scores are not all alike (a wiring fault that zeroes a level would still agree).
        let scores = &got[4 * anchors..];
        assert!(scores.iter().any(|v| (v - scores[0]).abs() > 1e-3), "scores vary");
    }

    /// Passes started at once from several threads (the photo worker, the bench, tests) all
    /// finish, with the same output: each keeps the pool's other workers polling, and none may
    /// wait on a thread that spins for another pass.
    #[test]
    fn concurrent_forwards_finish_and_agree() {
        let net = tiny_net();
        let s = 64;
        let img: Vec<f32> = (0..3 * s * s).map(|i| ((i * 31) % 255) as f32 / 255.0).collect();
        let want = net.forward_chw(&img, s, &Device::Cpu).expect("forward");
        std::thread::scope(|sc| {
            let runs: Vec<_> = (0..6)
                .map(|_| sc.spawn(|| (0..5).map(|_| net.forward_chw(&img, s, &Device::Cpu).expect("forward")).collect::<Vec<_>>()))
                .collect();
            for r in runs {
                for got in r.join().expect("no panic") {
                    assert_eq!(got, want, "a concurrent pass gives the same output");
                }
            }
        });
    }
}
