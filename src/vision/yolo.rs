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

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use tracing::{span, Level};

use crate::vision::conv_kernel::DirectConv;
use crate::vision::cpu_conv::{max_pool5, upsample2x, with_f32_values, FusedConv, WithResidual};
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

/// On CPU with f32 weights, our packed conv with fused bias (+ SiLU), see `cpu_conv.rs`.
fn cpu_fused(conv: &Conv2d, stride: usize, silu: bool) -> CResult<Option<FusedConv>> {
    let w = conv.weight();
    if !w.device().is_cpu() || w.dtype() != DType::F32 {
        return Ok(None);
    }
    let (co, ci, k, k2) = w.dims4()?;
    if k != k2 {
        candle_core::bail!("non-square {k}x{k2} kernel");
    }
    let bias = match conv.bias() {
        Some(b) => b.to_vec1::<f32>()?,
        None => vec![0f32; co],
    };
    if bias.len() != co {
        candle_core::bail!("bias has {} values for {co} output channels", bias.len());
    }
    let conv = DirectConv::new(&w.flatten_all()?.to_vec1::<f32>()?, bias, co, ci, k, stride, silu);
    Ok(Some(conv.map_err(candle_core::Error::wrap)?.into()))
}

/// Ultralytics `Conv`: conv (+ folded BN) + SiLU.
#[derive(Debug, Clone)]
pub struct ConvBlock {
    conv: Conv2d,
    fast: Option<FusedConv>,
    span: tracing::Span,
}

impl ConvBlock {
    pub fn load(vb: VarBuilder, stride: usize, bn_eps: f64) -> CResult<Self> {
        let conv = load_conv2d(&vb, stride, bn_eps)?;
        let fast = cpu_fused(&conv, stride, true)?;
        Ok(Self { conv, fast, span: span!(Level::TRACE, "conv") })
    }

    pub fn out_channels(&self) -> usize {
        self.conv.weight().dim(0).unwrap_or(0)
    }
}

impl ConvBlock {
    /// `silu(conv(cat(parts, dim 1)))`; on CPU a 1x1 conv skips building the concatenation.
    pub fn forward_parts(&self, parts: &[&Tensor]) -> CResult<Tensor> {
        if let Some(op) = &self.fast {
            if op.is_pointwise() && parts.iter().all(|p| p.dim(0).ok() == Some(1)) {
                let _e = self.span.enter();
                return op.forward_parts(parts);
            }
        }
        self.forward(&Tensor::cat(parts, 1)?)
    }

    /// `silu(conv(xs)) + residual`, fused on CPU.
    pub fn forward_add(&self, xs: &Tensor, residual: &Tensor) -> CResult<Tensor> {
        let _e = self.span.enter();
        match &self.fast {
            Some(op) => xs.contiguous()?.apply_op2_no_bwd(&residual.contiguous()?, &WithResidual(op)),
            None => self.conv.forward(xs)?.silu()? + residual,
        }
    }
}

impl Module for ConvBlock {
    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let _e = self.span.enter();
        match &self.fast {
            Some(op) => xs.contiguous()?.apply_op1_no_bwd(op),
            None => self.conv.forward(xs)?.silu(),
        }
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
}

impl Module for Bottleneck {
    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let _e = self.span.enter();
        let y = self.cv1.forward(xs)?;
        if self.residual {
            self.cv2.forward_add(&y, xs)
        } else {
            self.cv2.forward(&y)
        }
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
}

impl Module for C2f {
    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        // One input is the concatenation of a single part.
        self.forward_parts(&[xs])
    }
}

impl C2f {
    /// The block applied to the channel-concatenation of `parts` (the neck's concat inputs).
    pub fn forward_parts(&self, parts: &[&Tensor]) -> CResult<Tensor> {
        let _e = self.span.enter();
        let y = self.cv1.forward_parts(parts)?;
        let c = y.dim(1)? / 2;
        let mut ys = vec![y.narrow(1, 0, c)?, y.narrow(1, c, c)?];
        for m in &self.m {
            let next = m.forward(&ys[ys.len() - 1])?;
            ys.push(next);
        }
        let refs: Vec<&Tensor> = ys.iter().collect();
        self.cv2.forward_parts(&refs)
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
}

impl Module for Sppf {
    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let _e = self.span.enter();
        let x = self.cv1.forward(xs)?;
        let pool = |t: &Tensor| if t.device().is_cpu() && t.dtype() == DType::F32 { max_pool5(t) } else { max_pool5_same(t) };
        let y1 = pool(&x)?;
        let y2 = pool(&y1)?;
        let y3 = pool(&y2)?;
        self.cv2.forward_parts(&[&x, &y1, &y2, &y3])
    }
}

/// Ultralytics' `Sequential(Conv, Conv, Conv2d)` branch of the head.
#[derive(Debug, Clone)]
struct HeadBranch {
    a: ConvBlock,
    b: ConvBlock,
    out: Conv2d,
    out_fast: Option<FusedConv>,
}

impl HeadBranch {
    fn load(vb: VarBuilder, bn_eps: f64) -> CResult<Self> {
        let a = ConvBlock::load(vb.pp("0"), 1, bn_eps)?;
        let b = ConvBlock::load(vb.pp("1"), 1, bn_eps)?;
        let vb2 = vb.pp("2");
        let w = vb2.get_unchecked("weight")?;
        let bias = vb2.get_unchecked("bias")?;
        let out = Conv2d::new(w, Some(bias), Conv2dConfig::default());
        let out_fast = cpu_fused(&out, 1, false)?;
        Ok(Self { a, b, out, out_fast })
    }

    fn out_channels(&self) -> usize {
        self.out.weight().dim(0).unwrap_or(0)
    }
}

impl Module for HeadBranch {
    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let x = self.b.forward(&self.a.forward(xs)?)?;
        match &self.out_fast {
            Some(op) => x.apply_op1_no_bwd(op),
            None => self.out.forward(&x),
        }
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
        if cv2.iter().any(|b| b.out_channels() != 4 * REG_MAX) {
            candle_core::bail!("box branch is not 4 x {REG_MAX} DFL bins");
        }
        let nc = cv3[0].out_channels();
        if nc == 0 || cv3.iter().any(|b| b.out_channels() != nc) {
            candle_core::bail!("class branches disagree on the class count");
        }
        Ok(Self { cv2, cv3, nc, span: span!(Level::TRACE, "detect") })
    }

    pub fn num_classes(&self) -> usize {
        self.nc
    }

    pub fn forward(&self, levels: &[&Tensor; 3]) -> CResult<Tensor> {
        let _e = self.span.enter();
        let dev = levels[0].device();
        let mut boxes = Vec::with_capacity(3);
        let mut scores = Vec::with_capacity(3);
        let mut sizes = Vec::with_capacity(3);
        for (i, x) in levels.iter().enumerate() {
            let (_, _, h, w) = x.dims4()?;
            sizes.push((h, w));
            boxes.push(self.cv2[i].forward(x)?);
            scores.push(self.cv3[i].forward(x)?);
        }
        let (anchor_xy, stride) = make_anchors(&sizes, &STRIDES);
        let (b, a) = (levels[0].dim(0)?, stride.len());

        if dev.is_cpu() && boxes[0].dtype() == DType::F32 {
            // Plain parallel loops on CPU, reading each level's output in place: a dozen small
            // candle ops and two concatenations here each woke candle's spinning worker pool
            // (see cpu_conv.rs) for little work.
            let mut out = Vec::with_capacity(b * (4 + self.nc) * a);
            for bi in 0..b {
                let per: Vec<Tensor> = boxes.iter().chain(&scores).map(|t| t.get(bi)).collect::<CResult<_>>()?;
                let refs: Vec<&Tensor> = per.iter().collect();
                out.extend(with_f32_values(&refs, "detect head", |v| {
                    let lv: Vec<LevelLogits> = (0..3).map(|i| LevelLogits { boxes: v[i], classes: v[3 + i] }).collect();
                    dfl_decode(&lv, self.nc, REG_MAX, &anchor_xy, &stride)
                        .ok_or_else(|| candle_core::Error::Msg("detect head: the levels' outputs do not match the anchors".into()))
                })?);
            }
            return Tensor::from_vec(out, (b, 4 + self.nc, a), dev);
        }

        let flat = |ts: &[Tensor], c: usize| -> CResult<Tensor> {
            let ts: Vec<Tensor> = ts.iter().map(|t| t.reshape((b, c, ()))).collect::<CResult<_>>()?;
            Tensor::cat(&ts, 2)
        };
        let boxes = flat(&boxes, 4 * REG_MAX)?;
        let scores = flat(&scores, self.nc)?;

        // DFL: softmax over the 16 bins of each side, expectation with 0..15.
        let bins = candle_nn::ops::softmax(&boxes.reshape((b, 4, REG_MAX, a))?, 2)?;
        let proj = Tensor::arange(0f32, REG_MAX as f32, dev)?.to_dtype(bins.dtype())?.reshape((1, 1, REG_MAX, 1))?;
        let dist = bins.broadcast_mul(&proj)?.sum(2)?; // [b, 4, a]: left, top, right, bottom

        let anchors = Tensor::from_vec(anchor_xy, (1, 2, a), dev)?.to_dtype(dist.dtype())?;
        let stride = Tensor::from_vec(stride, (1, 1, a), dev)?.to_dtype(dist.dtype())?;
        let lt = dist.narrow(1, 0, 2)?;
        let rb = dist.narrow(1, 2, 2)?;
        let x1y1 = anchors.broadcast_sub(&lt)?;
        let x2y2 = anchors.broadcast_add(&rb)?;
        let cxy = ((&x1y1 + &x2y2)? / 2.0)?;
        let wh = (x2y2 - x1y1)?;
        let dbox = Tensor::cat(&[cxy, wh], 1)?.broadcast_mul(&stride)?;
        Tensor::cat(&[dbox, candle_nn::ops::sigmoid(&scores)?], 1)
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
    span: tracing::Span,
}

impl YoloV8 {
    /// Loads from Ultralytics names rooted at `model.` (the caller passes `vb.pp("model")`).
    pub fn load(vb: VarBuilder, bn_eps: f64) -> CResult<Self> {
        let c = |i: usize| vb.pp(i.to_string());
        Ok(Self {
            b0: ConvBlock::load(c(0), 2, bn_eps)?,
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
            span: span!(Level::TRACE, "yolov8"),
        })
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

    /// `xs`: `[1, 3, S, S]` RGB 0..1, S a multiple of 32. Returns `[1, 4 + nc, anchors]`.
    ///
    /// Each step runs inside a TRACE span `block` whose `i` is the Ultralytics layer index
    /// (`model.i` in the weights and in ONNX node names), so a profiler can put our time per
    /// block beside ONNX Runtime's (`cargo bench --bench vision` with `BENCH_PROFILE=1`). The
    /// concatenations 11/14/17/20 have no step of their own: their 1x1 consumer reads the parts.
    pub fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let _e = self.span.enter();
        let block = |i: usize| span!(Level::TRACE, "block", i).entered();
        let up = |i: usize, t: &Tensor| -> CResult<Tensor> {
            let _b = block(i);
            if t.device().is_cpu() && t.dtype() == DType::F32 {
                return upsample2x(t);
            }
            let (_, _, h, w) = t.dims4()?;
            t.upsample_nearest2d(h * 2, w * 2)
        };
        let run = |i: usize, f: &dyn Fn() -> CResult<Tensor>| -> CResult<Tensor> {
            let _b = block(i);
            f()
        };
        let x = run(0, &|| self.b0.forward(xs))?;
        let x = run(1, &|| self.b1.forward(&x))?;
        let x = run(2, &|| self.b2.forward(&x))?;
        let x = run(3, &|| self.b3.forward(&x))?;
        let p3 = run(4, &|| self.b4.forward(&x))?;
        let x = run(5, &|| self.b5.forward(&p3))?;
        let p4 = run(6, &|| self.b6.forward(&x))?;
        let x = run(7, &|| self.b7.forward(&p4))?;
        let x = run(8, &|| self.b8.forward(&x))?;
        let p5 = run(9, &|| self.b9.forward(&x))?;
        // Concat layers 11/14/17/20 feed a C2f whose first conv is 1x1: passed as parts.
        let u = up(10, &p5)?;
        let x12 = run(12, &|| self.b12.forward_parts(&[&u, &p4]))?;
        let u = up(13, &x12)?;
        let x15 = run(15, &|| self.b15.forward_parts(&[&u, &p3]))?;
        let x = run(16, &|| self.b16.forward(&x15))?;
        let x18 = run(18, &|| self.b18.forward_parts(&[&x, &x12]))?;
        let x = run(19, &|| self.b19.forward(&x18))?;
        let x21 = run(21, &|| self.b21.forward_parts(&[&x, &p5]))?;
        run(22, &|| self.head.forward(&[&x15, &x18, &x21]))
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
