//! The candle side of our CPU convolution: YOLOv8's conv + bias + SiLU (+ residual) as candle
//! custom ops over the kernel in `conv_kernel.rs`.
//!
//! Why not candle's `conv2d`: profiling the straightforward port (596-667 ms for YOLOv8n vs
//! 152-164 ms in ONNX Runtime) showed candle's CPU conv spending its time outside the matrix
//! product: every call re-transposes the input NCHW→NHWC and re-flattens the kernel in a
//! single-threaded strided loop, then the bias add and SiLU are two more passes through
//! memory. A later im2col + `gemm` version still spent a third of its time building im2col
//! tiles and re-packing weights per tile; the direct kernel reads the input in place.
//!
//! Keeping candle's own element-wise ops out of the hot path matters on a 2-core box: each one
//! wakes candle's spinning worker pool, which then competes with the kernel's threads for cores.
//!
//! Invariants: inputs and residuals are contiguous CPU f32 (checked, an error otherwise); the
//! output is a new contiguous tensor. Other devices use candle's conv2d (see yolo.rs).

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Device, Layout, Shape, Storage, Tensor};

use crate::vision::conv_kernel::DirectConv;

/// Keeps freed activation buffers in the heap for the next forward pass (glibc only).
///
/// Every layer's output is a fresh `Vec` (candle owns it). glibc serves allocations above its
/// mmap threshold with `mmap` and gives them back on free, so each forward pass page-faulted
/// its ~60 MB of activations in again: the kernel's page clearing took a third as long as the
/// convolutions themselves (`perf`, YOLOv8n). With a fixed 32 MB threshold (glibc's maximum;
/// YOLOv8's largest buffer is ~7 MB at 640) and no heap trimming below 512 MB, freed buffers are
/// reused. Process-wide and idempotent; the cost is that the heap keeps its peak size.
pub fn keep_activation_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; any value is safe to pass.
            let ok =
                unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20) == 1 };
            if !ok {
                tracing::warn!("mallopt refused: activation buffers will be page-faulted in on every forward pass");
            }
        });
    }
}

/// Runs `f` on the values of CPU f32 tensors, borrowed in place (each made contiguous first,
/// which copies only a tensor that is not).
pub fn with_f32_values<R>(ts: &[&Tensor], what: &str, f: impl FnOnce(&[&[f32]]) -> candle_core::Result<R>) -> candle_core::Result<R> {
    let ts: Vec<Tensor> = ts.iter().map(|t| t.contiguous()).collect::<candle_core::Result<_>>()?;
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(ts.len());
    for (g, l) in &guards {
        let Storage::Cpu(cpu) = &**g else {
            candle_core::bail!("{what}: the tensor must be on the CPU");
        };
        slices.push(f32_slice(cpu, l, what)?);
    }
    f(&slices)
}

/// `f(out_plane, in_plane)` over every `h x w` plane of a CPU f32 `[b, c, h, w]` tensor, in
/// parallel; the output has the same planes at `(oh, ow)`.
fn map_planes(xs: &Tensor, what: &str, (oh, ow): (usize, usize), f: impl Fn(&mut [f32], &[f32]) + Sync) -> candle_core::Result<Tensor> {
    use rayon::prelude::*;
    let (b, c, h, w) = xs.dims4()?;
    let out = with_f32_values(&[xs], what, |inp| {
        let mut out = vec![0f32; b * c * oh * ow];
        out.par_chunks_mut(oh * ow).zip(inp[0].par_chunks(h * w)).for_each(|(o, i)| f(o, i));
        Ok(out)
    })?;
    Tensor::from_vec(out, (b, c, oh, ow), &Device::Cpu)
}

/// Nearest-neighbour 2x upsampling of a CPU f32 `[b, c, h, w]` tensor (the neck's
/// `nn.Upsample(scale_factor=2)`), one parallel pass; candle's generic version took 2 ms for
/// YOLOv8n's 80x80 map on two threads, ten times ORT's.
pub fn upsample2x(xs: &Tensor) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    map_planes(xs, "upsample", (2 * h, 2 * w), |o, i| {
        for (y, row) in i.chunks_exact(w).enumerate() {
            let (top, bottom) = o[4 * y * w..4 * (y + 1) * w].split_at_mut(2 * w);
            for (pair, v) in top.chunks_exact_mut(2).zip(row) {
                pair.fill(*v);
            }
            bottom.copy_from_slice(top);
        }
    })
}

/// `nn.MaxPool2d(5, 1, 2)` of a CPU f32 `[b, c, h, w]` tensor: the borders see -inf, never
/// zeros (SPPF's input can be negative). Separable, a row pass then a column pass per plane, in
/// parallel over planes: candle's pooling plus the -inf border concatenations took 6.7 ms of
/// YOLOv8n's SPPF on two threads, ORT 0.9 ms.
pub fn max_pool5(xs: &Tensor) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    map_planes(xs, "max-pool", (h, w), |o, x| {
        // Each pass is the element-wise maximum of five shifted slices, which vectorises (a
        // window fold per value did not: YOLOv8n's SPPF took 2.56 ms on one thread, now 2.22).
        // `rows` keeps two -inf rows above and below the row-pooled plane for the column pass.
        let mut padded = vec![f32::NEG_INFINITY; w + 4];
        let mut rows = vec![f32::NEG_INFINITY; (h + 4) * w];
        let max5 = |dst: &mut [f32], src: &[f32], step: usize| {
            dst.copy_from_slice(&src[..dst.len()]);
            for k in 1..5 {
                dst.iter_mut().zip(&src[k * step..]).for_each(|(d, v)| *d = d.max(*v));
            }
        };
        for (y, src) in x.chunks_exact(w).enumerate() {
            padded[2..2 + w].copy_from_slice(src);
            max5(&mut rows[(y + 2) * w..(y + 3) * w], &padded, 1);
        }
        for (y, dst) in o.chunks_exact_mut(w).enumerate() {
            max5(dst, &rows[y * w..], w);
        }
    })
}

/// A new vector of `n` values, all written by `fill`: a layer's output is not zeroed first (that
/// was one more serial pass over every activation).
fn filled(n: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>]) -> candle_core::Result<()>) -> candle_core::Result<Vec<f32>> {
    let mut v = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n])?;
    // SAFETY: `fill` returned Ok, and the kernel's `forward_*_into` calls it makes write every value
    // of the buffer they are given when they return Ok (conv_kernel.rs).
    unsafe { v.set_len(n) };
    Ok(v)
}

/// A packed f32 convolution with optional fused SiLU.
#[derive(Debug, Clone)]
pub struct FusedConv {
    kernel: DirectConv,
}

/// The contiguous f32 values of a CPU storage, or a candle error naming `what`.
fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("fused conv: {what} must be f32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("fused conv: {what} must be contiguous");
    };
    Ok(&data[start..end])
}

impl From<DirectConv> for FusedConv {
    fn from(kernel: DirectConv) -> Self {
        Self { kernel }
    }
}

impl FusedConv {
    /// Runs on a CPU f32 input, with an optional residual added after the activation, one
    /// image of the batch at a time.
    fn run(&self, storage: &CpuStorage, layout: &Layout, res: Option<(&CpuStorage, &Layout)>) -> candle_core::Result<(CpuStorage, Shape)> {
        let inp = f32_slice(storage, layout, "input")?;
        let (b, c, h, w) = layout.shape().dims4()?;
        if c != self.kernel.c_in() {
            candle_core::bail!("fused conv: {c} input channels, weights expect {}", self.kernel.c_in());
        }
        let Some((oh, ow)) = self.kernel.out_size(h, w) else {
            candle_core::bail!("fused conv: input {h}x{w} smaller than the kernel");
        };
        let co = self.kernel.c_out();
        let (in_len, out_len) = (c * h * w, co * oh * ow);
        let res = res.map(|(s, l)| f32_slice(s, l, "residual")).transpose()?;
        if res.is_some_and(|r| r.len() != b * out_len) {
            candle_core::bail!("fused conv: residual does not have the output's {} values", b * out_len);
        }
        let out = filled(b * out_len, |out| {
            for (i, o) in out.chunks_exact_mut(out_len).enumerate() {
                let r = res.map(|r| &r[i * out_len..(i + 1) * out_len]);
                self.kernel.forward_into(&inp[i * in_len..(i + 1) * in_len], h, w, r, o).map_err(candle_core::Error::wrap)?;
            }
            Ok(())
        })?;
        Ok((CpuStorage::F32(out), Shape::from((b, co, oh, ow))))
    }

    /// Whether [`FusedConv::forward_parts`] applies (a 1x1 stride-1 conv).
    pub fn is_pointwise(&self) -> bool {
        self.kernel.is_pointwise()
    }

    /// A 1x1 conv over the channel-concatenation of `parts`, without building the
    /// concatenation: each part's channels are more taps of the same kernel. Used for the
    /// concat-then-1x1 pattern of C2f, SPPF and the neck. Batch 1, CPU f32.
    pub fn forward_parts(&self, parts: &[&Tensor]) -> candle_core::Result<Tensor> {
        let (_, _, h, w) = parts.first().map(|t| t.dims4()).transpose()?.unwrap_or((0, 0, 0, 0));
        for p in parts {
            let (b, _, ph, pw) = p.dims4()?;
            if b != 1 || ph != h || pw != w {
                candle_core::bail!("fused conv: parts must be 1 x C x {h} x {w}");
            }
        }
        let co = self.kernel.c_out();
        let out = with_f32_values(parts, "fused conv: a part", |slices| {
            filled(co * h * w, |out| self.kernel.forward_parts_into(slices, h, w, out).map_err(candle_core::Error::wrap))
        })?;
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

    /// Our op over candle tensors `wt` `[co, ci, k, k]` and `bias` `[co]`.
    fn fused(wt: &Tensor, bias: &Tensor, stride: usize, silu: bool) -> candle_core::Result<FusedConv> {
        let (co, ci, k, _) = wt.dims4()?;
        let conv = DirectConv::new(&wt.flatten_all()?.to_vec1()?, bias.to_vec1()?, co, ci, k, stride, silu);
        Ok(conv.map_err(candle_core::Error::wrap)?.into())
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn parts_equal_concat() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let a = Tensor::randn(0f32, 1.0, (1, 5, 9, 13), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (1, 64, 9, 13), &dev)?;
        let c = Tensor::randn(0f32, 1.0, (1, 3, 18, 26), &dev)?.narrow(2, 0, 9)?.narrow(3, 0, 13)?; // non-contiguous
        let wt = Tensor::randn(0f32, 0.3, (7, 72, 1, 1), &dev)?;
        let bias = Tensor::randn(0f32, 0.5, 7, &dev)?;
        let op = fused(&wt, &bias, 1, true)?;
        let want = Tensor::cat(&[&a, &b, &c], 1)?.apply_op1_no_bwd(&op)?;
        let got = op.forward_parts(&[&a, &b, &c])?;
        let d = max_diff(&got, &want)?;
        assert!(d < 1e-4, "{d}");
        assert!(op.forward_parts(&[&a, &b]).is_err(), "channel count is checked");
        Ok(())
    }

    #[test]
    fn upsample_equals_candle() -> candle_core::Result<()> {
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 7), &Device::Cpu)?;
        let want = x.upsample_nearest2d(10, 14)?;
        let got = upsample2x(&x)?;
        assert_eq!(got.dims(), want.dims());
        let d = max_diff(&got, &want)?;
        assert_eq!(d, 0.0);
        Ok(())
    }

    #[test]
    fn max_pool_equals_the_yolo_reference() -> candle_core::Result<()> {
        // Negative values everywhere: a zero border would show as a wrong maximum.
        let x = (Tensor::randn(0f32, 1.0, (1, 3, 9, 6), &Device::Cpu)? - 5.0)?;
        let want = crate::vision::yolo::max_pool5_same(&x)?;
        let got = max_pool5(&x)?;
        assert_eq!(got.dims(), want.dims());
        let d = max_diff(&got, &want)?;
        assert_eq!(d, 0.0);
        Ok(())
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
                let op = fused(&wt, &bias, s, true)?;
                let got = x.apply_op1_no_bwd(&op)?;
                assert_eq!(got.dims(), want.dims());
                let d = max_diff(&got, &want)?;
                assert!(d < 1e-4, "ci{ci} k{k} s{s}: {d}");
                if s == 1 {
                    let r = Tensor::randn(0f32, 1.0, want.dims(), &dev)?;
                    let got = x.apply_op2_no_bwd(&r, &WithResidual(&op))?;
                    let d = max_diff(&got, &(want + r)?)?;
                    assert!(d < 1e-4, "residual ci{ci} k{k}: {d}");
                }
            }
        }
        Ok(())
    }
}
