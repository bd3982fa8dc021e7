//! Our CPU convolution for the YOLOv8 blocks: conv + bias + SiLU in one candle custom op.
//!
//! Why not candle's `conv2d`: profiling the straightforward port (596-667 ms for YOLOv8n vs
//! 152-164 ms in ONNX Runtime) showed candle's CPU conv spending its time outside the matrix
//! product: every call re-transposes the input NCHW→NHWC and re-flattens the kernel in a
//! single-threaded strided loop, then the bias add and SiLU are two more passes through
//! memory (SiLU single-threaded, with scalar `exp`). Here:
//! - weights are packed once at load (`[c_out, c_in * kh * kw]`, already the PyTorch order);
//! - a 1x1 stride-1 conv is a single gemm straight on the input (no copy at all);
//! - other convs build an im2col matrix `[c_in * kh * kw, out_h * out_w]` in parallel
//!   (row copies for stride 1) and run one gemm;
//! - bias + SiLU (+ the Bottleneck residual add) are fused into one parallel pass with a
//!   vectorisable `exp`, compiled for AVX2+FMA when the CPU has it (runtime check), since the
//!   default x86-64 target only auto-vectorises to SSE2;
//! - the im2col buffer is a per-thread scratch reused across calls: allocating it fresh made
//!   the kernel zero and page-fault ~15 MB per layer.
//!
//! Keeping candle's own element-wise ops out of the hot path matters on a 2-core box: each one
//! wakes candle's spinning worker pool, which then competes with the gemm threads for cores.
//!
//! The gemm is the `gemm` crate candle itself uses. Only f32, batch 1-N, square kernels with
//! "same" padding (k/2) — all that YOLOv8 has. Other devices use candle's conv2d (see yolo.rs).

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Device, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

/// A packed f32 convolution with optional fused SiLU.
#[derive(Debug, Clone)]
pub struct FusedConv {
    /// `[c_out, c_in * k * k]`, row-major.
    weight: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    silu: bool,
}

impl FusedConv {
    pub fn new(weight: Vec<f32>, bias: Vec<f32>, c_out: usize, c_in: usize, k: usize, stride: usize, silu: bool) -> Self {
        Self { weight, bias, c_in, c_out, k, stride, pad: k / 2, silu }
    }
}

/// exp(x) for f32, written so the compiler vectorises it (no branches, no libm call):
/// range reduction x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, 2^n by exponent bits.
/// Relative error ~2e-7 (about 2 ulp), same order as libm's expf.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Round to nearest via the 1.5 * 2^23 trick (vectorises, unlike f32::round).
    const MAGIC: f32 = 12_582_912.0;
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    // The integer n sits in the low mantissa bits of t: no float->int conversion needed.
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let bits = (ni.wrapping_add(127) as u32) << 23;
    p * f32::from_bits(bits)
}

#[inline(always)]
fn epilogue_generic(row: &mut [f32], b: f32, silu: bool, res: Option<&[f32]>) {
    match (silu, res) {
        (true, None) => {
            for v in row.iter_mut() {
                let x = *v + b;
                *v = x / (1.0 + fast_exp(-x));
            }
        }
        (true, Some(r)) => {
            for (v, r) in row.iter_mut().zip(r) {
                let x = *v + b;
                *v = x / (1.0 + fast_exp(-x)) + r;
            }
        }
        (false, None) => row.iter_mut().for_each(|v| *v += b),
        (false, Some(r)) => row.iter_mut().zip(r).for_each(|(v, r)| *v = *v + b + r),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn epilogue_avx2(row: &mut [f32], b: f32, silu: bool, res: Option<&[f32]>) {
    epilogue_generic(row, b, silu, res)
}

/// `row = silu(row + b) (+ res)`, the per-channel epilogue after the gemm.
fn epilogue(row: &mut [f32], b: f32, silu: bool, res: Option<&[f32]>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the features this function is compiled for were just detected.
            unsafe { epilogue_avx2(row, b, silu, res) };
            return;
        }
    }
    epilogue_generic(row, b, silu, res)
}

thread_local! {
    /// Per-thread im2col tile scratch (a few hundred KB: sized to stay in L2).
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Target im2col tile size in floats (~512 KB): the tile is written and then read by the gemm
/// while still in L2, instead of a whole-layer im2col matrix going through DRAM.
const TILE_FLOATS: usize = 128 * 1024;

/// im2col for the output pixels `p0..p1` of one image: rows `(ci, kh, kw)`, `p1 - p0` columns.
#[allow(clippy::too_many_arguments)]
fn im2col_tile(
    cols: &mut [f32],
    inp: &[f32],
    split: Option<&[f32]>,
    c_in: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ow: usize,
    p0: usize,
    p1: usize,
) {
    let tw = p1 - p0;
    for (row, dst) in cols.chunks_exact_mut(tw).take(c_in * k * k).enumerate() {
        let ci = row / (k * k);
        let kh = (row / k) % k;
        let kw = row % k;
        let src = &inp[ci * h * w..(ci + 1) * h * w];
        let mut p = p0;
        while p < p1 {
            let oy = p / ow;
            let ox_a = p % ow;
            let ox_b = (ow).min(ox_a + (p1 - p));
            let d = &mut dst[p - p0..p - p0 + (ox_b - ox_a)];
            let iy = (oy * stride + kh) as isize - pad as isize;
            if iy < 0 || iy >= h as isize {
                d.fill(0.0); // zero padding, as in PyTorch's conv
            } else {
                let srow = &src[iy as usize * w..(iy as usize + 1) * w];
                // Valid output columns: 0 <= ox*stride + kw - pad < w.
                let lo = pad.saturating_sub(kw).div_ceil(stride);
                let hi = if w + pad > kw { (w + pad - kw - 1) / stride + 1 } else { 0 };
                // Three spans: left padding, valid pixels, right padding (no per-pixel branch).
                let a = lo.clamp(ox_a, ox_b);
                let z = hi.clamp(a, ox_b);
                d[..a - ox_a].fill(0.0);
                d[z - ox_a..].fill(0.0);
                let valid = &mut d[a - ox_a..z - ox_a];
                if !valid.is_empty() {
                    let first = a * stride + kw - pad;
                    if stride == 1 {
                        valid.copy_from_slice(&srow[first..first + valid.len()]);
                    } else if let Some(split) = split {
                        // Stride 2 on the de-interleaved input: columns `first, first+2, ...`
                        // all have `first`'s parity, so they sit contiguously in that half.
                        let we = w.div_ceil(2);
                        let srow2 = &split[ci * h * w + iy as usize * w..][..w];
                        let start = if first % 2 == 0 { first / 2 } else { we + first / 2 };
                        valid.copy_from_slice(&srow2[start..start + valid.len()]);
                    } else {
                        for (j, v) in valid.iter_mut().enumerate() {
                            *v = srow[first + j * stride];
                        }
                    }
                }
            }
            p += ox_b - ox_a;
        }
    }
}

/// Each input row de-interleaved into its even columns then its odd columns, so a stride-2
/// im2col row becomes a contiguous copy instead of a scalar gather (~11 M gathers per YOLOv8n
/// forward otherwise).
fn deinterleave(inp: &[f32], w: usize) -> Vec<f32> {
    let we = w.div_ceil(2);
    let mut out = vec![0f32; inp.len()];
    out.par_chunks_mut(w).zip(inp.par_chunks(w)).for_each(|(o, r)| {
        for (j, v) in r.iter().enumerate() {
            o[if j % 2 == 0 { j / 2 } else { we + j / 2 }] = *v;
        }
    });
    out
}

/// A raw output pointer shared by the tile tasks: each task writes a disjoint set of columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint column ranges of the output (see `run`), never the same element.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// A method (not `.0`) so closures capture the whole `Send` wrapper, not the raw field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

impl FusedConv {
    /// Runs on a CPU f32 input, with an optional residual added after the activation.
    ///
    /// Work is split into tiles of output pixels (columns). Each tile, on one thread: im2col of
    /// the tile into a per-thread L2-sized scratch (1x1 stride-1 convs read the input directly),
    /// a single-threaded gemm into the tile's columns of the output, then the epilogue on those
    /// columns while they are still in cache. One fork-join per conv instead of three.
    fn run(&self, storage: &CpuStorage, layout: &Layout, res: Option<(&CpuStorage, &Layout)>) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("fused conv: only f32 is supported on CPU");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("fused conv: input must be contiguous");
        };
        let inp = &data[start..end];
        let (b, c, h, w) = layout.shape().dims4()?;
        if c != self.c_in {
            candle_core::bail!("fused conv: {c} input channels, weights expect {}", self.c_in);
        }
        let (k, s, p) = (self.k, self.stride, self.pad);
        if h + 2 * p < k || w + 2 * p < k {
            candle_core::bail!("fused conv: input {h}x{w} smaller than the kernel");
        }
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (w + 2 * p - k) / s + 1;
        let ohw = oh * ow;
        let kk = self.c_in * k * k;
        let co = self.c_out;
        let out_len = b * co * ohw;
        let res: Option<&[f32]> = match res {
            None => None,
            Some((CpuStorage::F32(r), rl)) => {
                let Some((rs, re)) = rl.contiguous_offsets() else {
                    candle_core::bail!("fused conv: residual must be contiguous");
                };
                if re - rs != out_len {
                    candle_core::bail!("fused conv: residual has {} values, output {out_len}", re - rs);
                }
                Some(&r[rs..re])
            }
            Some(_) => candle_core::bail!("fused conv: residual must be f32"),
        };
        let direct = k == 1 && s == 1;
        // Tile width: columns per task, multiple of 16 (the gemm's vector width), at least 64,
        // and small enough that 2 threads get several tiles each on the 20x20 maps.
        let tw = ((TILE_FLOATS / kk.max(1)) / 16 * 16).clamp(64, 4096).min(ohw.max(1));
        let n_tiles = ohw.div_ceil(tw);
        // Zeroed although every element is overwritten: leaving it uninitialised measured no
        // clear gain (within the noise of this shared machine) and zeroing keeps it obviously sound.
        let mut out = vec![0f32; out_len];
        let out_ptr = OutPtr(out.as_mut_ptr());
        let split = if s == 2 && !direct { Some(deinterleave(inp, w)) } else { None };
        (0..b * n_tiles).into_par_iter().for_each(|task| {
            let (bi, t) = (task / n_tiles, task % n_tiles);
            let p0 = t * tw;
            let p1 = (p0 + tw).min(ohw);
            let n = p1 - p0;
            let img = &inp[bi * c * h * w..(bi + 1) * c * h * w];
            // SAFETY: this task writes only columns p0..p1 of image bi, rows 0..co.
            let dst = unsafe { out_ptr.get().add(bi * co * ohw + p0) };
            let gemm_tile = |rhs: *const f32, rhs_rs: usize| unsafe {
                // SAFETY: dst is [co, n] with row stride ohw inside `out`; lhs [co, kk]
                // row-major; rhs [kk, n] with row stride rhs_rs, all in bounds.
                gemm::gemm(
                    co,
                    n,
                    kk,
                    dst,
                    1,
                    ohw as isize,
                    false,
                    self.weight.as_ptr(),
                    1,
                    kk as isize,
                    rhs,
                    1,
                    rhs_rs as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            };
            if direct {
                gemm_tile(img[p0..].as_ptr(), ohw);
            } else {
                COLS.with(|cell| {
                    let mut cols = cell.borrow_mut();
                    if cols.len() < kk * n {
                        cols.resize(kk * n, 0.0);
                    }
                    let cols = &mut cols[..kk * n];
                    let split_img = split.as_deref().map(|sp| &sp[bi * c * h * w..(bi + 1) * c * h * w]);
                    im2col_tile(cols, img, split_img, c, h, w, k, s, p, ow, p0, p1);
                    gemm_tile(cols.as_ptr(), n);
                });
            }
            for ch in 0..co {
                // SAFETY: row ch of this tile: n elements at dst + ch * ohw, owned by this task.
                let row = unsafe { std::slice::from_raw_parts_mut(dst.add(ch * ohw), n) };
                let r = res.map(|r| &r[bi * co * ohw + ch * ohw + p0..bi * co * ohw + ch * ohw + p1]);
                epilogue(row, self.bias[ch], self.silu, r);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, co, oh, ow))))
    }
}

impl FusedConv {
    /// Whether [`FusedConv::forward_parts`] applies (a 1x1 stride-1 conv).
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1
    }

    /// A 1x1 conv over the channel-concatenation of `parts`, without building the concatenation:
    /// the gemm runs once per part on the matching column block of the weights, accumulating
    /// into the output (`W @ cat(x1, x2) = W[:, :c1] @ x1 + W[:, c1:] @ x2`). Used for the
    /// concat-then-1x1 pattern of C2f, SPPF and the neck. Batch 1, CPU f32, contiguous parts.
    pub fn forward_parts(&self, parts: &[&Tensor]) -> candle_core::Result<Tensor> {
        if !self.is_pointwise() {
            candle_core::bail!("fused conv: forward_parts needs a 1x1 stride-1 conv");
        }
        let (_, _, h, w) = parts.first().map(|t| t.dims4()).transpose()?.unwrap_or((0, 0, 0, 0));
        let parts: Vec<Tensor> = parts.iter().map(|t| t.contiguous()).collect::<candle_core::Result<_>>()?;
        let guards: Vec<_> = parts.iter().map(|t| t.storage_and_layout()).collect();
        let mut slices: Vec<(&[f32], usize)> = Vec::with_capacity(parts.len());
        for (g, l) in &guards {
            let (b, c, ph, pw) = l.shape().dims4()?;
            if b != 1 || ph != h || pw != w {
                candle_core::bail!("fused conv: parts must be 1 x C x {h} x {w}");
            }
            let (Storage::Cpu(CpuStorage::F32(v)), Some((s0, s1))) = (&**g, l.contiguous_offsets()) else {
                candle_core::bail!("fused conv: parts must be contiguous CPU f32");
            };
            slices.push((&v[s0..s1], c));
        }
        let c_total: usize = slices.iter().map(|(_, c)| c).sum();
        if c_total != self.c_in {
            candle_core::bail!("fused conv: parts hold {c_total} channels, weights expect {}", self.c_in);
        }
        let (co, kk, hw) = (self.c_out, self.c_in, h * w);
        let tw = ((TILE_FLOATS / kk.max(1)) / 16 * 16).clamp(64, 4096).min(hw.max(1));
        let n_tiles = hw.div_ceil(tw);
        let mut out = vec![0f32; co * hw];
        let out_ptr = OutPtr(out.as_mut_ptr());
        (0..n_tiles).into_par_iter().for_each(|t| {
            let p0 = t * tw;
            let p1 = (p0 + tw).min(hw);
            let n = p1 - p0;
            // SAFETY: this task writes only columns p0..p1 of the output.
            let dst = unsafe { out_ptr.get().add(p0) };
            let mut c_off = 0;
            for (j, (x, c)) in slices.iter().enumerate() {
                // SAFETY: dst [co, n] (row stride hw) inside `out`; lhs = columns
                // c_off..c_off+c of the [co, kk] weights; rhs [c, n] (row stride hw) in `x`.
                unsafe {
                    gemm::gemm(
                        co,
                        n,
                        *c,
                        dst,
                        1,
                        hw as isize,
                        j > 0,
                        self.weight.as_ptr().add(c_off),
                        1,
                        kk as isize,
                        x.as_ptr().add(p0),
                        1,
                        hw as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                };
                c_off += c;
            }
            for ch in 0..co {
                // SAFETY: row ch of this tile, owned by this task.
                let row = unsafe { std::slice::from_raw_parts_mut(dst.add(ch * hw), n) };
                epilogue(row, self.bias[ch], self.silu, None);
            }
        });
        drop(slices);
        drop(guards);
        Tensor::from_vec(out, (1, co, h, w), &Device::Cpu)
    }
}

impl CustomOp1 for FusedConv {
    fn name(&self) -> &'static str {
        "fused-conv-silu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(storage, layout, None)
    }
}

/// `silu(conv(x) + b) + residual` in one pass (Ultralytics Bottleneck with shortcut).
pub struct WithResidual<'a>(pub &'a FusedConv);

impl CustomOp2 for WithResidual<'_> {
    fn name(&self) -> &'static str {
        "fused-conv-silu-residual"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.0.run(s1, l1, Some((s2, l2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module, Tensor};

    #[test]
    fn parts_equal_concat() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let a = Tensor::randn(0f32, 1.0, (1, 5, 9, 13), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (1, 64, 9, 13), &dev)?;
        let c = Tensor::randn(0f32, 1.0, (1, 3, 18, 26), &dev)?.narrow(2, 0, 9)?.narrow(3, 0, 13)?; // non-contiguous
        let wt = Tensor::randn(0f32, 0.3, (7, 72, 1, 1), &dev)?;
        let bias = Tensor::randn(0f32, 0.5, 7, &dev)?;
        let op = FusedConv::new(wt.flatten_all()?.to_vec1()?, bias.to_vec1()?, 7, 72, 1, 1, true);
        let want = Tensor::cat(&[&a, &b, &c], 1)?.apply_op1_no_bwd(&op)?;
        let got = op.forward_parts(&[&a, &b, &c])?;
        let d = (got - want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(d < 1e-4, "{d}");
        assert!(op.forward_parts(&[&a, &b]).is_err(), "channel count is checked");
        Ok(())
    }

    #[test]
    fn fast_exp_is_accurate() {
        for i in -800..=800 {
            let x = i as f32 * 0.1;
            let (a, b) = (fast_exp(x), x.exp());
            assert!(((a - b) / b).abs() < 1e-6, "exp({x}): {a} vs {b}");
        }
        assert!(fast_exp(-1000.0) < 1e-37);
        assert!(fast_exp(1000.0).is_finite());
    }

    /// Our op equals candle's conv2d + bias + SiLU (+ residual), for 1x1 and 3x3, stride 1
    /// and 2, on a tiny input (one tile) and on one large enough to be split into many tiles
    /// with odd sizes (partial last tile, rows split across tiles).
    #[test]
    fn matches_candle_conv() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for (ci, h, w) in [(3, 7, 6), (64, 45, 51)] {
            let x = Tensor::randn(0f32, 1.0, (1, ci, h, w), &dev)?;
            for (k, s, co) in [(1, 1, 4), (3, 1, 5), (3, 2, 2), (1, 2, 3)] {
                let wt = Tensor::randn(0f32, 0.2, (co, ci, k, k), &dev)?;
                let bias = Tensor::randn(0f32, 0.5, co, &dev)?;
                let cfg = candle_nn::Conv2dConfig { padding: k / 2, stride: s, ..Default::default() };
                let want = candle_nn::Conv2d::new(wt.clone(), Some(bias.clone()), cfg).forward(&x)?.silu()?;
                let op = FusedConv::new(wt.flatten_all()?.to_vec1()?, bias.to_vec1()?, co, ci, k, s, true);
                let got = x.apply_op1_no_bwd(&op)?;
                assert_eq!(got.dims(), want.dims());
                let d = (got - &want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
                assert!(d < 1e-4, "ci{ci} k{k} s{s}: {d}");
                if s == 1 {
                    let r = Tensor::randn(0f32, 1.0, want.dims(), &dev)?;
                    let got = x.apply_op2_no_bwd(&r, &WithResidual(&op))?;
                    let d = (got - (want + r)?)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
                    assert!(d < 1e-4, "residual ci{ci} k{k}: {d}");
                }
            }
        }
        Ok(())
    }
}
