//! Our CPU convolution kernel, on the blocked layout of `blocked.rs` (NCHW16c): direct
//! convolution, no im2col, bias + SiLU (+ residual) applied to each tile as it is stored.
//!
//! A tile is `NB` blocks of 16 output channels by `NP` consecutive output pixels of one row.
//! Its accumulators stay in registers for the whole reduction: for every input channel `ci` and
//! tap `(kh, kw)`, load the `NB` weight vectors (16 output channels each) and, per pixel,
//! broadcast the one input value and multiply-add. The input's zero border is the convolution's
//! padding, so every tap of every tile reads memory the same way: no edge cases, no padded copy.
//! This is ONNX Runtime's MLAS design; a 1x1 convolution over few channels is as efficient as a
//! 3x3 one, which our earlier pixel-vectorised NCHW kernel was not (40 against 95 GFLOP/s).
//!
//! Invariants:
//! - Tile shapes per kernel: AVX-512 up to `NB` = 2 by `NP` = 12 (24 zmm accumulators); AVX2 and
//!   portable code up to 1 by 6 (12 ymm, or 24 NEON registers on aarch64). `NP` is even; a row's
//!   last tile may compute one pixel past the row's end (reading the border, the next row or the
//!   buffer's slack, all inside the buffer) and stores only the valid ones.
//! - Weights are packed once at load as `[c_out / 16][c_in blocks][k][k][lanes_in][16]`, zeros
//!   padding both channel counts, so padding output lanes compute to exactly 0 (zero weights,
//!   zero bias, SiLU(0) = 0): the layout's "padding lanes are zero" holds for every output.
//! - Each output element is written exactly once, by one task; the border by `Act::build`.
//! - Each output is summed in tap order `(ci block, kh, kw, ci lane)` with FMA: it differs from a
//!   naive sum by rounding only (tested against an f64 reference for every kernel this CPU runs).
//! - Work is split into (output-block group, row chunk) tasks on the caller's rayon pool: one
//!   fork-join per convolution, at least 4 tasks per thread.
//! - f32, one image, kernels 1x1 and 3x3 (the border is one pixel), stride 1 or 2, input lanes
//!   16 or 1: everything YOLOv8 has. Shapes are checked at load and per call, never trusted.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::vision::blocked::{Act, LANES};

/// Which micro-kernel runs: chosen once at load from what the CPU reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust (`mul_add`): aarch64 (Jetson) gets NEON FMA from it.
    Portable,
    Avx2,
    Avx512,
}

impl Isa {
    /// The best kernel this CPU runs, or a lesser one named by `SERVICEBAY_CONV_ISA`
    /// (`portable`, `avx2`, `avx512`): the benchmark uses it to measure the AVX2 kernel that
    /// boxes without AVX-512 get. A name the CPU cannot run is ignored.
    pub fn detect() -> Isa {
        static CHOSEN: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let all = Isa::available();
            let best = all.last().copied().unwrap_or(Isa::Portable);
            let asked = match std::env::var("SERVICEBAY_CONV_ISA").ok().as_deref() {
                Some("portable") => Some(Isa::Portable),
                Some("avx2") => Some(Isa::Avx2),
                Some("avx512") => Some(Isa::Avx512),
                _ => None,
            };
            asked.filter(|a| all.contains(a)).unwrap_or(best)
        })
    }

    /// Every kernel this CPU can run (the tests compare each with the reference).
    pub fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                v.push(Isa::Avx2);
            }
            if std::is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
        }
        v
    }

    /// (output blocks per tile, the most pixels per tile). Tiles are an even number of pixels
    /// wide, from 2 (AVX2, portable) or 4 (AVX-512) up to the most.
    fn tile_shape(self) -> (usize, usize) {
        match self {
            Isa::Avx512 => (2, 12),
            Isa::Avx2 | Isa::Portable => (1, 6),
        }
    }
}

/// A row of `ow` pixels cut into tiles `(x0, width)`: as few as the widest tile allows, of one
/// even width, and a last one as narrow as its remainder allows (an 80-pixel row: 6 x 12 + 8;
/// a 20-pixel row: 10 + 10, where 12 + 4 + 4 spent two thirds of its tiles on 4-pixel ones).
fn row_tiles(ow: usize, widest: usize) -> Vec<(usize, usize)> {
    let even = |n: usize| n + n % 2;
    let width = even(ow.div_ceil(ow.div_ceil(widest).max(1))).clamp(2, widest);
    (0..ow).step_by(width).map(|x0| (x0, even(width.min(ow - x0)).max(2))).collect()
}

/// Why a convolution cannot be built or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("convolution: {0}")]
    Shape(String),
}

/// A convolution with packed weights, bias and optional fused SiLU.
#[derive(Debug, Clone)]
pub struct BlockConv {
    /// `[ceil(c_out / 16)][ceil(c_in / lanes_in)][k][k][lanes_in][16]`.
    packed: Vec<f32>,
    /// One per output channel, zeros up to a whole block.
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    lanes_in: usize,
    silu: bool,
    isa: Isa,
}

impl BlockConv {
    /// `weight` in PyTorch order `[c_out, c_in, k, k]`, `bias` one per output channel; the
    /// input comes in blocks of `lanes_in` channels (16, or 1 for the network's input image).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        weight: &[f32],
        bias: &[f32],
        c_out: usize,
        c_in: usize,
        k: usize,
        stride: usize,
        silu: bool,
        lanes_in: usize,
    ) -> Result<Self, KernelError> {
        Self::with_isa(weight, bias, c_out, c_in, k, stride, silu, lanes_in, Isa::detect())
    }

    /// As [`BlockConv::new`] with a chosen kernel (tests run every kernel the CPU has).
    #[allow(clippy::too_many_arguments)]
    pub fn with_isa(
        weight: &[f32],
        bias: &[f32],
        c_out: usize,
        c_in: usize,
        k: usize,
        stride: usize,
        silu: bool,
        lanes_in: usize,
        isa: Isa,
    ) -> Result<Self, KernelError> {
        if !(k == 1 || k == 3) || !(1..=2).contains(&stride) || !(lanes_in == 1 || lanes_in == LANES) || c_in == 0 || c_out == 0 {
            return Err(KernelError::Shape(format!(
                "{c_out}x{c_in}x{k}x{k} stride {stride}, input lanes {lanes_in}: 1x1 or 3x3, stride 1 or 2, lanes 1 or {LANES} only"
            )));
        }
        if weight.len() != c_out * c_in * k * k || bias.len() != c_out {
            return Err(KernelError::Shape(format!("{} weights and {} biases for {c_out}x{c_in}x{k}x{k}", weight.len(), bias.len())));
        }
        let per_block = c_in.div_ceil(lanes_in) * k * k * lanes_in * LANES;
        let mut packed = vec![0f32; c_out.div_ceil(LANES) * per_block];
        for (co, filter) in weight.chunks_exact(c_in * k * k).enumerate() {
            for (ci, taps) in filter.chunks_exact(k * k).enumerate() {
                for (t, v) in taps.iter().enumerate() {
                    let tap = (ci / lanes_in) * k * k + t;
                    packed[(co / LANES) * per_block + (tap * lanes_in + ci % lanes_in) * LANES + co % LANES] = *v;
                }
            }
        }
        let mut b = vec![0f32; c_out.div_ceil(LANES) * LANES];
        b[..c_out].copy_from_slice(bias);
        Ok(Self { packed, bias: b, c_in, c_out, k, stride, lanes_in, silu, isa })
    }

    pub fn c_in(&self) -> usize {
        self.c_in
    }

    pub fn c_out(&self) -> usize {
        self.c_out
    }

    /// Output size for an `h` x `w` input.
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        let pad = self.k / 2;
        ((h + 2 * pad - self.k) / self.stride + 1, (w + 2 * pad - self.k) / self.stride + 1)
    }

    /// `silu(conv(cat(parts)) + b) (+ res)`. The channel concatenation of `parts` is never
    /// built: their blocks are simply more input blocks. Every part but the last must hold
    /// whole blocks, all must share one size and lane count; `res` has the output's shape.
    pub fn forward(&self, parts: &[&Act], res: Option<&Act>) -> Result<Act, KernelError> {
        let Some(first) = parts.first() else {
            return Err(KernelError::Shape("no input".into()));
        };
        let (h, w, li) = (first.h(), first.w(), first.lanes());
        let aligned = parts.iter().rev().skip(1).all(|p| p.c() % li == 0);
        if !aligned || li != self.lanes_in || parts.iter().any(|p| (p.h(), p.w(), p.lanes()) != (h, w, li)) {
            return Err(KernelError::Shape(format!("inputs must share one size, lanes {}, whole blocks but the last", self.lanes_in)));
        }
        if parts.iter().map(|p| p.c()).sum::<usize>() != self.c_in {
            return Err(KernelError::Shape(format!(
                "inputs hold {} channels, weights expect {}",
                parts.iter().map(|p| p.c()).sum::<usize>(),
                self.c_in
            )));
        }
        let (oh, ow) = self.out_size(h, w);
        if res.is_some_and(|r| (r.c(), r.h(), r.w(), r.lanes()) != (self.c_out, oh, ow, LANES)) {
            return Err(KernelError::Shape(format!("residual is not {}x{oh}x{ow}", self.c_out)));
        }
        // Input block origins (as integers, so tasks can share them) and their channel counts.
        let blocks: Vec<(usize, usize)> = parts
            .iter()
            .flat_map(|p| {
                let (base, bl) = (p.data().as_ptr() as usize, p.block_len());
                (0..p.blocks()).map(move |b| (base + b * bl * 4, (p.c() - b * li).min(li)))
            })
            .collect();
        Ok(Act::build(self.c_out, oh, ow, LANES, |out| self.run(&blocks, w, (oh, ow), res, out)))
    }

    /// The tiled, parallel loop; `out` is the output's blocks (its border is already zero).
    fn run(&self, blocks: &[(usize, usize)], w: usize, (oh, ow): (usize, usize), res: Option<&Act>, out: &mut [MaybeUninit<f32>]) {
        let (nb_max, widest) = self.isa.tile_shape();
        let (k, s, li) = (self.k, self.stride, self.lanes_in);
        let pad = k / 2;
        let in_row = (w + 2) * li;
        let (out_row, out_bl) = ((ow + 2) * LANES, (oh + 2) * (ow + 2) * LANES);
        let per_block = blocks.len() * k * k * li * LANES;
        let tiles = row_tiles(ow, widest);
        // Output-block units of up to `nb_max` blocks.
        let cob = self.c_out.div_ceil(LANES);
        let units: Vec<(usize, usize)> = (0..cob).step_by(nb_max).map(|b| (b, nb_max.min(cob - b))).collect();
        let want = 4 * rayon::current_num_threads().max(1);
        let rows_per = oh.div_ceil(oh.min(want));
        let row_chunks = oh.div_ceil(rows_per);
        let per_group = units.len().div_ceil(want.div_ceil(row_chunks).clamp(1, units.len()));
        let groups = units.len().div_ceil(per_group);
        let out_addr = out.as_mut_ptr() as usize;
        let res_addr = res.map(|r| r.data().as_ptr() as usize);
        (0..groups * row_chunks).into_par_iter().for_each(|task| {
            let (g, rc) = (task / row_chunks, task % row_chunks);
            let my_units = &units[g * per_group..((g + 1) * per_group).min(units.len())];
            // Output blocks outermost: their weights stay in cache while the rows go by (with
            // the blocks innermost, a 128 -> 256 conv cycled 1.2 MB of weights per tile).
            for &(ob, nb) in my_units {
                for oy in rc * rows_per..((rc + 1) * rows_per).min(oh) {
                    for &(x0, np) in &tiles {
                        // Input position of tap (0, 0) for the tile's first pixel, border included.
                        let pos = (oy * s + 1 - pad) * in_row + (x0 * s + 1 - pad) * li;
                        let o = (oy + 1) * out_row + (x0 + 1) * LANES;
                        let t = Tile {
                            blocks,
                            pos,
                            k,
                            in_row,
                            lanes: li,
                            w: self.packed[ob * per_block..].as_ptr(),
                            w_block: per_block,
                            bias: self.bias[ob * LANES..].as_ptr(),
                            // SAFETY (for the kernel's writes): this task alone writes blocks
                            // `ob..ob + nb` at row `oy`, pixels `x0..x0 + n`, all inside `out`.
                            out: (out_addr as *mut f32).wrapping_add(ob * out_bl + o),
                            out_block: out_bl,
                            res: res_addr.map(|r| (r as *const f32).wrapping_add(ob * out_bl + o)),
                            n: np.min(ow - x0),
                            silu: self.silu,
                        };
                        // SAFETY: the ISA was detected on this CPU; reads stay inside the
                        // input buffers (border and slack, module invariants); writes as above.
                        unsafe { tile(self.isa, nb, np, s * li, &t) };
                    }
                }
            }
        });
    }
}

/// One tile's operands. Pointers, because tasks share the output buffer.
struct Tile<'a> {
    /// Input block origins and the channels each holds.
    blocks: &'a [(usize, usize)],
    /// Offset, in floats, of the tile's first tap in every block.
    pos: usize,
    k: usize,
    /// Floats per input row.
    in_row: usize,
    /// Input channels to a block.
    lanes: usize,
    /// Packed weights of the tile's first output block.
    w: *const f32,
    /// Floats between two output blocks' packed weights.
    w_block: usize,
    bias: *const f32,
    /// The tile's first output pixel in its first output block.
    out: *mut f32,
    /// Floats between two output blocks.
    out_block: usize,
    /// The residual at the same place as `out`.
    res: Option<*const f32>,
    /// Valid pixels (the rest of the tile is past the row's end).
    n: usize,
    silu: bool,
}

/// Runs the tile of `nb` output blocks by `np` pixels with input step `step` (stride times
/// input lanes) on `isa`'s kernel.
///
/// # Safety
/// `isa` runs on this CPU, and `t` satisfies the module's invariants.
unsafe fn tile(isa: Isa, nb: usize, np: usize, step: usize, t: &Tile) {
    macro_rules! pick {
        ($f:ident; $(($nb:literal, $np:literal)),*) => {
            match (nb, np, step) {
                $(
                    ($nb, $np, 1) => $f::<$nb, $np, 1>(t),
                    ($nb, $np, 2) => $f::<$nb, $np, 2>(t),
                    ($nb, $np, 16) => $f::<$nb, $np, 16>(t),
                    ($nb, $np, 32) => $f::<$nb, $np, 32>(t),
                )*
                _ => unreachable!("tile {nb}x{np} step {step} is not built for {isa:?}"),
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            pick!(tile_avx512; (2, 12), (2, 10), (2, 8), (2, 6), (2, 4), (2, 2), (1, 12), (1, 10), (1, 8), (1, 6), (1, 4), (1, 2))
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => pick!(tile_avx2; (1, 6), (1, 4), (1, 2)),
        _ => pick!(tile_portable; (1, 6), (1, 4), (1, 2)),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const NB: usize, const NP: usize, const STEP: usize>(t: &Tile) {
    tile_body::<x86::Zmm, NB, NP, STEP>(t)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const NB: usize, const NP: usize, const STEP: usize>(t: &Tile) {
    tile_body::<x86::Ymm2, NB, NP, STEP>(t)
}

unsafe fn tile_portable<const NB: usize, const NP: usize, const STEP: usize>(t: &Tile) {
    tile_body::<Lanes, NB, NP, STEP>(t)
}

/// 16 f32 lanes (one output block) as the target holds them. The methods are inlined into the
/// `#[target_feature]` function that instantiates `tile_body`, so the intrinsics compile for
/// that target.
trait Vec16: Copy {
    /// Whether `mul_add` is an instruction here (for the epilogue's exp).
    const FMA: bool;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn splat(x: f32) -> Self;
    /// `self + a * b`.
    unsafe fn fma(self, a: Self, b: Self) -> Self;
    unsafe fn add(self, a: Self) -> Self;
    unsafe fn store(self, p: *mut f32);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub struct Zmm(__m512);

    impl super::Vec16 for Zmm {
        const FMA: bool = true;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Zmm(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            Zmm(_mm512_set1_ps(x))
        }
        #[inline(always)]
        unsafe fn fma(self, a: Self, b: Self) -> Self {
            Zmm(_mm512_fmadd_ps(a.0, b.0, self.0))
        }
        #[inline(always)]
        unsafe fn add(self, a: Self) -> Self {
            Zmm(_mm512_add_ps(self.0, a.0))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self.0)
        }
    }

    #[derive(Clone, Copy)]
    pub struct Ymm2(__m256, __m256);

    impl super::Vec16 for Ymm2 {
        const FMA: bool = true;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Ymm2(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            let v = _mm256_set1_ps(x);
            Ymm2(v, v)
        }
        #[inline(always)]
        unsafe fn fma(self, a: Self, b: Self) -> Self {
            Ymm2(_mm256_fmadd_ps(a.0, b.0, self.0), _mm256_fmadd_ps(a.1, b.1, self.1))
        }
        #[inline(always)]
        unsafe fn add(self, a: Self) -> Self {
            Ymm2(_mm256_add_ps(self.0, a.0), _mm256_add_ps(self.1, a.1))
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self.0);
            _mm256_storeu_ps(p.add(8), self.1);
        }
    }
}

/// Portable lanes: aarch64 keeps them in four NEON registers.
#[derive(Clone, Copy)]
struct Lanes([f32; LANES]);

impl Vec16 for Lanes {
    const FMA: bool = cfg!(any(target_arch = "aarch64", target_feature = "fma"));
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Lanes(std::ptr::read_unaligned(p as *const [f32; LANES]))
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Lanes([x; LANES])
    }
    #[inline(always)]
    unsafe fn fma(self, a: Self, b: Self) -> Self {
        let mut r = self.0;
        for ((r, a), b) in r.iter_mut().zip(a.0).zip(b.0) {
            // A fused multiply-add where the target has one; elsewhere `mul_add` is a libm call.
            *r = if Self::FMA { a.mul_add(b, *r) } else { a * b + *r };
        }
        Lanes(r)
    }
    #[inline(always)]
    unsafe fn add(self, a: Self) -> Self {
        let mut r = self.0;
        r.iter_mut().zip(a.0).for_each(|(r, a)| *r += a);
        Lanes(r)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::ptr::write_unaligned(p as *mut [f32; LANES], self.0)
    }
}

/// The tile: accumulate in registers, store the valid pixels with their bias, then SiLU and
/// the residual run over the stored span while it is in L1.
#[inline(always)]
unsafe fn tile_body<V: Vec16, const NB: usize, const NP: usize, const STEP: usize>(t: &Tile) {
    let mut acc = [[V::splat(0.0); NP]; NB];
    let mut w = t.w;
    for &(addr, nci) in t.blocks {
        let base = (addr as *const f32).add(t.pos);
        for kh in 0..t.k {
            for kw in 0..t.k {
                let x = base.add(kh * t.in_row + kw * t.lanes);
                for ci in 0..nci {
                    let mut wv = [V::splat(0.0); NB];
                    for (b, wv) in wv.iter_mut().enumerate() {
                        *wv = V::load(w.add(b * t.w_block + ci * LANES));
                    }
                    for j in 0..NP {
                        let v = V::splat(*x.add(j * STEP + ci));
                        for b in 0..NB {
                            acc[b][j] = acc[b][j].fma(wv[b], v);
                        }
                    }
                }
                w = w.add(t.lanes * LANES);
            }
        }
    }
    for (b, acc) in acc.iter().enumerate() {
        let o = t.out.add(b * t.out_block);
        // The bias comes last, as in ONNX Runtime (its rounding is the parity tests' reference).
        let bias = V::load(t.bias.add(b * LANES));
        for (j, a) in acc.iter().enumerate().take(t.n) {
            a.add(bias).store(o.add(j * LANES));
        }
        let span = std::slice::from_raw_parts_mut(o, t.n * LANES);
        if t.silu {
            // `V::FMA` is a constant: one branch survives.
            if V::FMA {
                span.iter_mut().for_each(|v| *v /= 1.0 + exp_impl::<true>(-*v));
            } else {
                span.iter_mut().for_each(|v| *v /= 1.0 + exp_impl::<false>(-*v));
            }
        }
        if let Some(r) = t.res {
            let r = std::slice::from_raw_parts(r.add(b * t.out_block), t.n * LANES);
            span.iter_mut().zip(r).for_each(|(d, r)| *d += r);
        }
    }
}

/// exp(x) for f32, written so the compiler vectorises it (no branches, no libm call):
/// range reduction x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, 2^n by exponent bits.
/// Relative error ~2e-7 (about 2 ulp), same order as libm's expf.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    exp_impl::<false>(x)
}

/// The polynomial in Horner form, with fused multiply-adds when `FMA` (only inside functions
/// compiled for an FMA target: elsewhere `mul_add` would be a libm call).
#[inline(always)]
fn exp_impl<const FMA: bool>(x: f32) -> f32 {
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
    const C: [f32; 7] = [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];
    let mut p = C[0];
    for c in &C[1..] {
        p = if FMA { p.mul_add(r, *c) } else { p * r + c };
    }
    let bits = (ni.wrapping_add(127) as u32) << 23;
    p * f32::from_bits(bits)
}

/// Deterministic values in [-1, 1) (xorshift), so a failure reproduces: the vision tests' one
/// source of test data.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_values as values;

    /// The textbook convolution, summed in f64: the reference every kernel is held to.
    #[allow(clippy::too_many_arguments)]
    fn naive(x: &[f32], c_in: usize, h: usize, w: usize, wt: &[f32], b: &[f32], co: usize, k: usize, s: usize, silu: bool) -> Vec<f32> {
        let p = k / 2;
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let mut out = vec![0f32; co * oh * ow];
        for o in 0..co {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0f64;
                    for ci in 0..c_in {
                        for kh in 0..k {
                            for kw in 0..k {
                                let (iy, ix) = ((oy * s + kh) as isize - p as isize, (ox * s + kw) as isize - p as isize);
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    acc +=
                                        wt[((o * c_in + ci) * k + kh) * k + kw] as f64 * x[(ci * h + iy as usize) * w + ix as usize] as f64;
                                }
                            }
                        }
                    }
                    let v = acc as f32 + b[o];
                    out[(o * oh + oy) * ow + ox] = if silu { v / (1.0 + (-v).exp()) } else { v };
                }
            }
        }
        out
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
    }

    fn act(x: &[f32], c: usize, h: usize, w: usize, lanes: usize) -> Act {
        Act::from_chw(x, c, h, w, lanes).expect("sizes match")
    }

    /// Every kernel against the reference: 1x1 and 3x3, stride 1 and 2, input lanes 16 and 1,
    /// channel counts that fill no block, one or several, and map widths that end in a wide
    /// tile, a narrow one, or a partial one (pixels computed past the row's end).
    #[test]
    fn every_kernel_matches_the_naive_convolution() {
        let cases = [(1, 1, 1, 16), (3, 7, 6, 1), (3, 9, 13, 16), (5, 13, 11, 16), (17, 20, 20, 16), (64, 19, 27, 16), (3, 30, 41, 1)];
        for isa in Isa::available() {
            for (seed, &(ci, h, w, lanes)) in cases.iter().enumerate() {
                for &(k, s, co) in &[(1, 1, 4), (3, 1, 5), (3, 2, 2), (1, 2, 3), (3, 1, 40), (3, 2, 17), (1, 1, 48)] {
                    let x = values(ci * h * w, seed as u64 + 11);
                    let wt: Vec<f32> = values(co * ci * k * k, seed as u64 + 23).iter().map(|v| v * 0.3).collect();
                    let b = values(co, seed as u64 + 37);
                    let what = format!("{isa:?} ci{ci} {h}x{w} lanes {lanes} k{k} s{s} co{co}");
                    let op = BlockConv::with_isa(&wt, &b, co, ci, k, s, true, lanes, isa).expect("valid shape");
                    let input = act(&x, ci, h, w, lanes);
                    let got = op.forward(&[&input], None).expect("forward");
                    let want = naive(&x, ci, h, w, &wt, &b, co, k, s, true);
                    let d = max_diff(&got.to_chw(), &want);
                    assert!(d < 1e-4, "{what}: {d}");
                    // The output's border and padding lanes are zero (the next layer's padding).
                    let blocks = &got.data()[..got.blocks() * got.block_len()];
                    let nonzero = blocks.iter().filter(|v| **v != 0.0).count();
                    assert!(nonzero <= co * got.h() * got.w(), "{what}: {nonzero} non-zero values outside the interior");
                    // Residual, and no activation.
                    let r = values(want.len(), 99);
                    let lin = BlockConv::with_isa(&wt, &b, co, ci, k, s, false, lanes, isa).expect("valid shape");
                    let res = act(&r, co, got.h(), got.w(), LANES);
                    let got = lin.forward(&[&input], Some(&res)).expect("forward");
                    let want: Vec<f32> = naive(&x, ci, h, w, &wt, &b, co, k, s, false).iter().zip(&r).map(|(a, r)| a + r).collect();
                    let d = max_diff(&got.to_chw(), &want);
                    assert!(d < 1e-4, "{what} residual: {d}");
                }
            }
        }
    }

    /// A conv over parts equals the same conv over their concatenation, for every kernel; the
    /// halves of an activation (views) are valid parts.
    #[test]
    fn parts_equal_the_concatenation() {
        for isa in Isa::available() {
            let (h, w) = (9, 13);
            let (a, b, c) = (values(16 * h * w, 1), values(64 * h * w, 2), values(3 * h * w, 3));
            let wt = values(7 * 83 * 9, 4);
            let bias = values(7, 5);
            let op = BlockConv::with_isa(&wt, &bias, 7, 83, 3, 1, true, LANES, isa).expect("valid shape");
            let cat: Vec<f32> = [a.clone(), b.clone(), c.clone()].concat();
            let want = op.forward(&[&act(&cat, 83, h, w, LANES)], None).expect("forward").to_chw();
            let parts = [act(&a, 16, h, w, LANES), act(&b, 64, h, w, LANES), act(&c, 3, h, w, LANES)];
            let got = op.forward(&[&parts[0], &parts[1], &parts[2]], None).expect("parts").to_chw();
            assert!(max_diff(&got, &want) < 1e-5, "{isa:?}");
            let [p, q] = parts[1].halves().expect("32 + 32 channels: block-aligned halves");
            let got = op.forward(&[&parts[0], &p, &q, &parts[2]], None).expect("halves as parts").to_chw();
            assert!(max_diff(&got, &want) < 1e-5, "{isa:?} halves");
            assert!(op.forward(&[&parts[0], &parts[1]], None).is_err(), "the channel count is checked");
            assert!(op.forward(&[&parts[2], &parts[0], &parts[1]], None).is_err(), "a part that is not whole blocks must be last");
        }
    }

    /// Tiles cover each row exactly once, in widths a kernel is built for, computing at most
    /// one pixel past the row's end.
    #[test]
    fn row_tiles_cover_the_row_with_built_widths() {
        for widest in [6, 12] {
            for ow in 1..200 {
                let tiles = row_tiles(ow, widest);
                let mut next = 0;
                for &(x0, np) in &tiles {
                    assert_eq!(x0, next, "ow {ow}: tiles are contiguous");
                    assert!(np % 2 == 0 && (2..=widest).contains(&np), "ow {ow}: width {np}");
                    next = x0 + np;
                }
                assert!(next == ow || next == ow + 1, "ow {ow}: tiles end at {next}");
                assert_eq!(tiles.len(), ow.div_ceil(widest), "ow {ow}: as few tiles as the widest allows");
            }
        }
        assert_eq!(row_tiles(20, 12), vec![(0, 10), (10, 10)]);
        assert_eq!(row_tiles(80, 12).last(), Some(&(72, 8)));
    }

    #[test]
    fn shapes_are_checked_not_trusted() {
        assert!(BlockConv::new(&[0.0; 4], &[0.0], 1, 1, 2, 1, true, LANES).is_err(), "even kernel");
        assert!(BlockConv::new(&[0.0; 25], &[0.0], 1, 1, 5, 1, true, LANES).is_err(), "5x5 needs a wider border");
        assert!(BlockConv::new(&[0.0; 9], &[0.0], 1, 1, 3, 3, true, LANES).is_err(), "stride 3");
        assert!(BlockConv::new(&[0.0; 8], &[0.0], 1, 1, 3, 1, true, LANES).is_err(), "weight count");
        assert!(BlockConv::new(&[0.0; 9], &[0.0], 1, 1, 3, 1, true, 4).is_err(), "input lanes");
        let op = BlockConv::new(&[0.0; 18], &[0.0], 1, 2, 3, 1, true, LANES).expect("valid");
        assert!(op.forward(&[], None).is_err(), "no input");
        assert!(op.forward(&[&act(&[0.0; 6], 1, 2, 3, LANES)], None).is_err(), "channel count");
        assert!(op.forward(&[&act(&[0.0; 12], 2, 2, 3, 1)], None).is_err(), "lanes");
        let res = act(&[0.0; 5], 1, 1, 5, LANES);
        assert!(op.forward(&[&act(&[0.0; 12], 2, 2, 3, LANES)], Some(&res)).is_err(), "residual shape");
    }

    #[test]
    fn fast_exp_is_accurate() {
        for i in -800..=800 {
            let x = i as f32 * 0.1;
            let (a, b) = (fast_exp(x), x.exp());
            assert!(((a - b) / b).abs() < 1e-6, "exp({x}): {a} vs {b}");
        }
        for i in -800..=800 {
            let x = i as f32 * 0.1;
            let (a, b) = (exp_impl::<true>(x), x.exp());
            assert!(((a - b) / b).abs() < 1e-6, "fma exp({x}): {a} vs {b}");
        }
        assert!(fast_exp(-1000.0) < 1e-37);
        assert!(fast_exp(1000.0).is_finite());
    }
}
