//! Our CPU convolution kernel: direct convolution on NCHW, no im2col, bias + SiLU (+ residual)
//! fused into the tile's epilogue. Every convolution YOLOv8 has (1x1, 3x3 stride 1, 3x3
//! stride 2) becomes one "flat" convolution over a prepared input.
//!
//! The idea: lay the input out so that every tap `(ci, kh, kw)` of the kernel sits one constant
//! offset away from the output position, counted in a single flat index `q`. Then
//! `out[co][q] = bias[co] + sum_t w[co][t] * x[off_t + q]`: a matrix product whose right-hand
//! side is never built, because the micro-kernel reads consecutive `q` straight from each
//! tap's row.
//! - 1x1 stride 1: the input itself; `q` is the pixel index, tap `ci` at `ci * h * w`.
//! - k x k stride 1: the input zero-padded by k/2 on every side; `q = oy * Wp + ox` with the
//!   padded width `Wp`, tap offset `ci * plane + kh * Wp + kw`. The `Wp - ow` positions per row
//!   past the right edge are computed and dropped (2 of 82 on an 80x80 map).
//! - k x k stride 2: the padded input split into its four (row parity, column parity) planes
//!   ("space to depth"), so input `(2oy + kh, 2ox + kw)` is plane `(kh & 1, kw & 1)` at
//!   `(oy + kh / 2, ox + kw / 2)`: again one offset per tap and unit stride along `q`.
//!
//! Invariants:
//! - The micro-kernel computes a tile of `MR` = 4 output channels by `nr` flat positions (48 with
//!   AVX-512, 16 with AVX2, 24 in portable code), its accumulators in registers. Each tap's read
//!   `[off_t + q, off_t + q + nr)` stays inside its buffer: prepared buffers end with `SLACK`
//!   zeros; tiles that would read past an unprepared input (a 1x1 conv's last partial tile) read
//!   a small zero-padded copy instead.
//! - Weights are packed once at load as `[ceil(co / MR)][taps][MR]`, zero rows padding `co` to a
//!   multiple of `MR`; the padding rows are computed and never stored.
//! - The epilogue (bias, SiLU) runs on each finished tile while it is in L1; then only valid
//!   output positions are copied out (adding the residual, if any, after the activation): every
//!   output element is written exactly once, by one task.
//! - Work is split into (channel-block group, position chunk) tasks on the caller's rayon pool:
//!   one fork-join per convolution, chunks sized so a chunk's input stays in L2 while all the
//!   group's channel blocks sweep it, and at least 4 tasks per thread for balance.
//! - Each output is summed in tap order `(ci, kh, kw)` with FMA: it differs from a naive sum by
//!   rounding only (tested against a naive f64 reference for every kernel this CPU can run).
//! - f32 only, batch of one image per call, odd square kernels with "same" padding (k / 2),
//!   stride 1 or 2: everything YOLOv8 has. The caller (`cpu_conv.rs`) checks shapes.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Output channels per micro-kernel tile.
pub const MR: usize = 4;
/// The widest tile (AVX-512: three 16-lane vectors).
const NR_MAX: usize = 48;
/// Zero floats after a prepared input, so the last tile's reads stay in bounds.
const SLACK: usize = NR_MAX + 16;
/// Input floats a position chunk may hold for all its taps (~256 KB, inside L2).
const CHUNK_FLOATS: usize = 64 * 1024;

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

    /// Flat positions per tile.
    fn nr(self) -> usize {
        match self {
            Isa::Avx512 => 48,
            Isa::Avx2 => 16,
            Isa::Portable => 24,
        }
    }
}

/// How the input is laid out before the taps read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prep {
    /// 1x1 stride 1: the input as it is.
    Direct,
    /// Stride 1: zero padding of k/2.
    Pad,
    /// Stride 2: zero padding of k/2, then the four parity planes.
    PadSplit,
}

/// Geometry of one call.
#[derive(Debug, Clone, Copy)]
struct Geom {
    prep: Prep,
    oh: usize,
    ow: usize,
    /// Row stride of `q` (the prepared plane's width).
    wv: usize,
    /// Flat positions to compute: `(oh - 1) * wv + ow`.
    nq: usize,
    /// Floats per input channel in the prepared layout.
    plane: usize,
}

/// A convolution with packed weights, bias and optional fused SiLU.
#[derive(Debug, Clone)]
pub struct DirectConv {
    /// `[ceil(c_out / MR)][c_in * k * k][MR]`.
    packed: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    silu: bool,
    isa: Isa,
}

/// Why a convolution cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("convolution: {0}")]
    Shape(String),
}

impl DirectConv {
    /// `weight` in PyTorch order `[c_out, c_in, k, k]`, `bias` one per output channel.
    pub fn new(
        weight: &[f32],
        bias: Vec<f32>,
        c_out: usize,
        c_in: usize,
        k: usize,
        stride: usize,
        silu: bool,
    ) -> Result<Self, KernelError> {
        Self::with_isa(weight, bias, c_out, c_in, k, stride, silu, Isa::detect())
    }

    /// As [`DirectConv::new`] with a chosen kernel (tests run every kernel the CPU has).
    #[allow(clippy::too_many_arguments)]
    pub fn with_isa(
        weight: &[f32],
        bias: Vec<f32>,
        c_out: usize,
        c_in: usize,
        k: usize,
        stride: usize,
        silu: bool,
        isa: Isa,
    ) -> Result<Self, KernelError> {
        let taps = c_in * k * k;
        if k % 2 == 0 || !(1..=2).contains(&stride) || c_in == 0 || c_out == 0 {
            return Err(KernelError::Shape(format!("{c_out}x{c_in}x{k}x{k} stride {stride}: odd kernel, stride 1 or 2 only")));
        }
        if weight.len() != c_out * taps || bias.len() != c_out {
            return Err(KernelError::Shape(format!("{} weights and {} biases for {c_out}x{c_in}x{k}x{k}", weight.len(), bias.len())));
        }
        let blocks = c_out.div_ceil(MR);
        let mut packed = vec![0f32; blocks * taps * MR];
        for co in 0..c_out {
            let (b, m) = (co / MR, co % MR);
            for t in 0..taps {
                packed[(b * taps + t) * MR + m] = weight[co * taps + t];
            }
        }
        Ok(Self { packed, bias, c_in, c_out, k, stride, silu, isa })
    }

    pub fn c_in(&self) -> usize {
        self.c_in
    }

    pub fn c_out(&self) -> usize {
        self.c_out
    }

    /// A 1x1 stride-1 convolution (the only kind [`DirectConv::forward_parts_into`] takes).
    pub fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1
    }

    /// Output size for an `h` x `w` input, or None when the input is smaller than the kernel.
    pub fn out_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let pad = self.k / 2;
        if h + 2 * pad < self.k || w + 2 * pad < self.k || h == 0 || w == 0 {
            return None;
        }
        Some(((h + 2 * pad - self.k) / self.stride + 1, (w + 2 * pad - self.k) / self.stride + 1))
    }

    fn taps(&self) -> usize {
        self.c_in * self.k * self.k
    }

    fn geom(&self, h: usize, w: usize, oh: usize, ow: usize) -> Geom {
        let pad = self.k / 2;
        let (prep, wv, plane) = if self.is_pointwise() {
            (Prep::Direct, w, h * w)
        } else if self.stride == 1 {
            let wp = w + 2 * pad;
            (Prep::Pad, wp, (h + 2 * pad) * wp)
        } else {
            let (hq, wq) = ((h + 2 * pad).div_ceil(2), (w + 2 * pad).div_ceil(2));
            (Prep::PadSplit, wq, 4 * hq * wq)
        };
        Geom { prep, oh, ow, wv, nq: (oh - 1) * wv + ow, plane }
    }

    /// Tap offsets into the prepared input, in packing order `(ci, kh, kw)`.
    fn offsets(&self, g: &Geom) -> Vec<usize> {
        let k = self.k;
        let mut offs = Vec::with_capacity(self.taps());
        for ci in 0..self.c_in {
            for kh in 0..k {
                for kw in 0..k {
                    offs.push(match g.prep {
                        Prep::Direct | Prep::Pad => ci * g.plane + kh * g.wv + kw,
                        Prep::PadSplit => {
                            let sub = g.plane / 4;
                            ci * g.plane + ((kh & 1) * 2 + (kw & 1)) * sub + (kh / 2) * g.wv + kw / 2
                        }
                    });
                }
            }
        }
        offs
    }

    /// The input laid out for `g`; None: the taps read the input as it is.
    fn prepare(&self, inp: &[f32], h: usize, w: usize, g: &Geom) -> Option<Vec<f32>> {
        let pad = self.k / 2;
        if g.prep == Prep::Direct {
            return None;
        }
        // Zeroed plane by plane in parallel (a serial zero-fill of the whole buffer was 2 % of
        // the forward pass on two threads).
        let n = self.c_in * g.plane;
        let mut out: Vec<f32> = Vec::with_capacity(n + SLACK);
        let (body, slack) = out.spare_capacity_mut()[..n + SLACK].split_at_mut(n);
        slack.fill(MaybeUninit::new(0.0));
        let planes = body.par_chunks_mut(g.plane).map(init_zeros).zip(inp.par_chunks(h * w));
        if g.prep == Prep::Pad {
            planes.for_each(|(dst, src)| {
                for (y, row) in src.chunks_exact(w).enumerate() {
                    let d = (y + pad) * g.wv + pad;
                    dst[d..d + w].copy_from_slice(row);
                }
            });
        } else {
            let sub = g.plane / 4;
            planes.for_each(|(dst, src)| {
                // Source column x is padded column x + pad: the even x go to the sub-plane of
                // column parity pad & 1 from column pad / 2 on, the odd x to the other parity
                // from column (pad + 1) / 2 on: one pass over each row, a pair at a time (it
                // was a strided pass per parity).
                let (ce, co) = (pad / 2, (pad + 1) / 2);
                for (y, row) in src.chunks_exact(w).enumerate() {
                    let py = y + pad;
                    let line = |parity: usize| ((py & 1) * 2 + parity) * sub + (py / 2) * g.wv;
                    let (le, lo) = (line(pad & 1), line((pad + 1) & 1));
                    // The two sub-planes are disjoint: split the plane between them.
                    let (even, odd) = if le < lo {
                        let (a, b) = dst.split_at_mut(lo);
                        (&mut a[le + ce..], &mut b[co..])
                    } else {
                        let (a, b) = dst.split_at_mut(le);
                        (&mut b[ce..], &mut a[lo + co..])
                    };
                    let pairs = row.chunks_exact(2);
                    if let [last] = pairs.remainder() {
                        even[w / 2] = *last;
                    }
                    for ((e, o), p) in even[..w / 2].iter_mut().zip(&mut odd[..w / 2]).zip(pairs) {
                        *e = p[0];
                        *o = p[1];
                    }
                }
            });
        }
        // SAFETY: every plane of the body and the slack were zero-filled above.
        unsafe { out.set_len(n + SLACK) };
        Some(out)
    }

    /// `silu(conv(x) + b) (+ res)` of one image `x` `[c_in, h, w]` into `out` `[c_out, oh, ow]`;
    /// `res`, when given, has the output's shape. `out` may be uninitialised (layer outputs are
    /// never zero-filled first): on `Ok`, every element has been written.
    pub fn forward_into(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        res: Option<&[f32]>,
        out: &mut [MaybeUninit<f32>],
    ) -> Result<(), KernelError> {
        let (oh, ow) = self.out_size(h, w).ok_or_else(|| KernelError::Shape(format!("input {h}x{w} smaller than the kernel")))?;
        if x.len() != self.c_in * h * w || out.len() != self.c_out * oh * ow || res.is_some_and(|r| r.len() != out.len()) {
            return Err(KernelError::Shape(format!("buffers do not match {}x{h}x{w} -> {}x{oh}x{ow}", self.c_in, self.c_out)));
        }
        let g = self.geom(h, w, oh, ow);
        let prepared = self.prepare(x, h, w, &g);
        let base: &[f32] = prepared.as_deref().unwrap_or(x);
        let offs = self.offsets(&g);
        self.run(&[(base, &offs)], &g, out, res);
        Ok(())
    }

    /// A 1x1 convolution over the channel concatenation of `parts` (each `[c_i, h, w]`), which
    /// is never built: each part's channels are simply more taps. `out` as in
    /// [`DirectConv::forward_into`].
    pub fn forward_parts_into(&self, parts: &[&[f32]], h: usize, w: usize, out: &mut [MaybeUninit<f32>]) -> Result<(), KernelError> {
        if !self.is_pointwise() {
            return Err(KernelError::Shape("parts need a 1x1 stride-1 convolution".into()));
        }
        let hw = h * w;
        if hw == 0
            || parts.iter().any(|p| p.len() % hw != 0)
            || parts.iter().map(|p| p.len() / hw).sum::<usize>() != self.c_in
            || out.len() != self.c_out * hw
        {
            return Err(KernelError::Shape(format!("parts do not hold {} channels of {h}x{w}", self.c_in)));
        }
        let g = self.geom(h, w, h, w);
        let offs: Vec<Vec<usize>> = parts.iter().map(|p| (0..p.len() / hw).map(|c| c * hw).collect()).collect();
        let src: Vec<(&[f32], &Vec<usize>)> = parts.iter().copied().zip(&offs).collect();
        self.run(&src, &g, out, None);
        Ok(())
    }

    /// The tiled, parallel loop. `src`: buffers with their tap offsets, in tap order.
    fn run(&self, src: &[(&[f32], &Vec<usize>)], g: &Geom, out: &mut [MaybeUninit<f32>], res: Option<&[f32]>) {
        let taps = self.taps();
        let nr = self.isa.nr();
        // Tap start addresses and their buffer's end, as integers so tasks can share them.
        let mut tap_addr = Vec::with_capacity(taps);
        let mut tap_end = Vec::with_capacity(taps);
        for (buf, offs) in src {
            let (start, end) = (buf.as_ptr() as usize, buf.as_ptr() as usize + std::mem::size_of_val(*buf));
            for &o in offs.iter() {
                tap_addr.push(start + o * 4);
                tap_end.push(end);
            }
        }
        let n_tiles = g.nq.div_ceil(nr);
        // Tiles before `safe` read in bounds straight from the buffers.
        let reads_ok = |q_end: usize| tap_addr.iter().zip(&tap_end).all(|(a, e)| a + q_end * 4 <= *e);
        let safe = if reads_ok(n_tiles * nr) { n_tiles } else { g.nq / nr };

        let blocks = self.c_out.div_ceil(MR);
        let per_pos = self.c_in * if g.prep == Prep::PadSplit { 4 } else { 1 };
        let chunk_tiles = (CHUNK_FLOATS / (per_pos * nr)).clamp(2, 64);
        let n_chunks = n_tiles.div_ceil(chunk_tiles);
        let want_tasks = 4 * rayon::current_num_threads().max(1);
        let per_group = blocks.div_ceil(want_tasks.div_ceil(n_chunks).clamp(1, blocks));
        let groups = blocks.div_ceil(per_group);

        let out_addr = out.as_mut_ptr() as usize;
        let ohw = g.oh * g.ow;
        (0..groups * n_chunks).into_par_iter().for_each(|task| {
            let (grp, ch) = (task / n_chunks, task % n_chunks);
            let (t0, t1) = (ch * chunk_tiles, ((ch + 1) * chunk_tiles).min(n_tiles));
            let (q0, q1) = (t0 * nr, (t1 * nr).min(g.nq));
            let ld = (t1 - t0) * nr;
            let mut tile = vec![0f32; MR * ld];
            // The tiles from `first` on read a zero-padded copy of their inputs.
            let first = safe.max(t0);
            let tail: Option<(Vec<f32>, Vec<usize>)> = (t1 > first).then(|| {
                let n = (t1 - first) * nr;
                let mut buf = vec![0f32; taps * n + SLACK];
                for (t, (&a, &e)) in tap_addr.iter().zip(&tap_end).enumerate() {
                    let avail = ((e - a) / 4).saturating_sub(first * nr).min(n);
                    // SAFETY: [a + first*nr, + avail) floats lie inside the tap's buffer (tap_end).
                    let s = unsafe { std::slice::from_raw_parts((a as *const f32).add(first * nr), avail) };
                    buf[t * n..t * n + avail].copy_from_slice(s);
                }
                let addrs = (0..taps).map(|t| buf.as_ptr() as usize + t * n * 4).collect();
                (buf, addrs)
            });
            for b in grp * per_group..((grp + 1) * per_group).min(blocks) {
                let w = &self.packed[b * taps * MR..(b + 1) * taps * MR];
                for t in t0..t1 {
                    let dst = &mut tile[(t - t0) * nr..];
                    match &tail {
                        Some((_, addrs)) if t >= first => micro(self.isa, addrs, (t - first) * nr, w, dst, ld),
                        _ => micro(self.isa, &tap_addr, t * nr, w, dst, ld),
                    }
                }
                for m in 0..MR.min(self.c_out - b * MR) {
                    let co = b * MR + m;
                    // Bias and SiLU over the whole row of the tile, dropped positions included:
                    // one vectorised pass in L1 instead of one short call per output row.
                    let row = &mut tile[m * ld..m * ld + (q1 - q0)];
                    epilogue(row, self.bias[co], self.silu);
                    // Valid positions: runs of `ow` per output row, `wv - ow` dropped between.
                    let mut q = q0;
                    while q < q1 {
                        let (oy, ox) = (q / g.wv, q % g.wv);
                        let end = (q - ox + g.ow).min(q1);
                        if ox < g.ow {
                            let o = co * ohw + oy * g.ow + ox;
                            let n = end - q;
                            // SAFETY: this task alone writes channel co at these positions.
                            let dst = unsafe { std::slice::from_raw_parts_mut((out_addr as *mut MaybeUninit<f32>).add(o), n) };
                            let src = &row[q - q0..q - q0 + n];
                            match res {
                                // The residual is added after the activation (Bottleneck).
                                Some(r) => dst.iter_mut().zip(src).zip(&r[o..o + n]).for_each(|((d, s), r)| {
                                    d.write(s + r);
                                }),
                                None => dst.iter_mut().zip(src).for_each(|(d, s)| {
                                    d.write(*s);
                                }),
                            }
                        }
                        q = (q - ox + g.wv).max(end);
                    }
                }
            }
        });
    }
}

/// `buf` filled with zeros, as the initialised floats it now holds.
fn init_zeros(buf: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    buf.fill(MaybeUninit::new(0.0));
    // SAFETY: every element was just written; MaybeUninit<f32> has f32's layout.
    unsafe { &mut *(buf as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// One `MR` x `nr` tile over all taps: `dst[m * ld + j] = sum_t w[t * MR + m] * tap_t[q + j]`.
fn micro(isa: Isa, taps: &[usize], q: usize, w: &[f32], dst: &mut [f32], ld: usize) {
    debug_assert!(w.len() == taps.len() * MR && dst.len() >= (MR - 1) * ld + isa.nr());
    match isa {
        // SAFETY: the ISA was detected on this CPU (`Isa::detect`/`available`); the reads are in
        // bounds by the module's invariant and the writes by the assertion above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { micro_avx512(taps, q, w, dst, ld) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { micro_avx2(taps, q, w, dst, ld) },
        _ => micro_portable(taps, q, w, dst, ld),
    }
}

fn micro_portable(taps: &[usize], q: usize, w: &[f32], dst: &mut [f32], ld: usize) {
    const NR: usize = 24;
    let mut acc = [[0f32; NR]; MR];
    for (t, &a) in taps.iter().enumerate() {
        // SAFETY: module invariant: [tap + q, + NR) is inside the tap's buffer.
        let x = unsafe { std::slice::from_raw_parts((a as *const f32).add(q), NR) };
        for (m, acc) in acc.iter_mut().enumerate() {
            let wv = w[t * MR + m];
            for (a, x) in acc.iter_mut().zip(x) {
                // A fused multiply-add where the target has one (aarch64: NEON fmla); elsewhere
                // `mul_add` would be a libm call per element.
                *a = if cfg!(any(target_arch = "aarch64", target_feature = "fma")) { wv.mul_add(*x, *a) } else { wv * x + *a };
            }
        }
    }
    for (m, acc) in acc.iter().enumerate() {
        dst[m * ld..m * ld + NR].copy_from_slice(acc);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_avx512(taps: &[usize], q: usize, w: &[f32], dst: &mut [f32], ld: usize) {
    use std::arch::x86_64::*;
    let mut c = [[_mm512_setzero_ps(); 3]; MR];
    let wp = w.as_ptr();
    for (t, &a) in taps.iter().enumerate() {
        let x = (a as *const f32).add(q);
        let x0 = _mm512_loadu_ps(x);
        let x1 = _mm512_loadu_ps(x.add(16));
        let x2 = _mm512_loadu_ps(x.add(32));
        for (m, c) in c.iter_mut().enumerate() {
            // Folded by the compiler into the FMA as an embedded {1to16} broadcast.
            let wv = _mm512_set1_ps(*wp.add(t * MR + m));
            c[0] = _mm512_fmadd_ps(wv, x0, c[0]);
            c[1] = _mm512_fmadd_ps(wv, x1, c[1]);
            c[2] = _mm512_fmadd_ps(wv, x2, c[2]);
        }
    }
    let d = dst.as_mut_ptr();
    for (m, c) in c.iter().enumerate() {
        _mm512_storeu_ps(d.add(m * ld), c[0]);
        _mm512_storeu_ps(d.add(m * ld + 16), c[1]);
        _mm512_storeu_ps(d.add(m * ld + 32), c[2]);
    }
}

/// AVX2 has 16 registers: 4 x 16 keeps 8 accumulators, 2 input vectors and the broadcast in
/// registers (a 4 x 24 tile spilled one accumulator to the stack on every tap).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2(taps: &[usize], q: usize, w: &[f32], dst: &mut [f32], ld: usize) {
    use std::arch::x86_64::*;
    let mut c = [[_mm256_setzero_ps(); 2]; MR];
    let wp = w.as_ptr();
    for (t, &a) in taps.iter().enumerate() {
        let x = (a as *const f32).add(q);
        let x0 = _mm256_loadu_ps(x);
        let x1 = _mm256_loadu_ps(x.add(8));
        for (m, c) in c.iter_mut().enumerate() {
            let wv = _mm256_broadcast_ss(&*wp.add(t * MR + m));
            c[0] = _mm256_fmadd_ps(wv, x0, c[0]);
            c[1] = _mm256_fmadd_ps(wv, x1, c[1]);
        }
    }
    let d = dst.as_mut_ptr();
    for (m, c) in c.iter().enumerate() {
        _mm256_storeu_ps(d.add(m * ld), c[0]);
        _mm256_storeu_ps(d.add(m * ld + 8), c[1]);
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

#[inline(always)]
fn epilogue_impl<const FMA: bool>(row: &mut [f32], b: f32, silu: bool) {
    if silu {
        row.iter_mut().for_each(|v| {
            let x = *v + b;
            *v = x / (1.0 + exp_impl::<FMA>(-x));
        });
    } else {
        row.iter_mut().for_each(|v| *v += b);
    }
}

fn epilogue_portable(row: &mut [f32], b: f32, silu: bool) {
    // aarch64 always has FMA; elsewhere the portable build may not.
    epilogue_impl::<{ cfg!(target_arch = "aarch64") }>(row, b, silu)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn epilogue_avx2(row: &mut [f32], b: f32, silu: bool) {
    epilogue_impl::<true>(row, b, silu)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn epilogue_avx512(row: &mut [f32], b: f32, silu: bool) {
    epilogue_impl::<true>(row, b, silu)
}

/// `row = silu(row + b)` (or `row + b`): compiled for AVX-512 or AVX2+FMA when the CPU has it, since
/// the default x86-64 target only auto-vectorises to SSE2.
fn epilogue(row: &mut [f32], b: f32, silu: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature this function is compiled for was just detected.
            unsafe { epilogue_avx512(row, b, silu) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the features this function is compiled for were just detected.
            unsafe { epilogue_avx2(row, b, silu) };
            return;
        }
    }
    epilogue_portable(row, b, silu)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An initialised buffer seen as one the kernel may write without reading.
    fn as_uninit(out: &mut [f32]) -> &mut [MaybeUninit<f32>] {
        // SAFETY: MaybeUninit<f32> has f32's size and alignment, and the kernel only writes
        // initialised values through it.
        unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) }
    }

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

    /// Deterministic values in [-1, 1) (xorshift), so a failure reproduces.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
    }

    /// Every kernel against the reference: 1x1, 3x3 and 5x5, stride 1 and 2, channel counts
    /// that are not multiples of MR, odd and even sizes, maps smaller than one tile and maps of
    /// many chunks with partial last tiles; with and without SiLU and residual.
    #[test]
    fn every_kernel_matches_the_naive_convolution() {
        for isa in Isa::available() {
            for (seed, &(ci, h, w)) in [(1, 1, 1), (3, 7, 6), (5, 13, 11), (17, 20, 20), (64, 45, 51), (3, 64, 30)].iter().enumerate() {
                for &(k, s, co) in &[(1, 1, 4), (3, 1, 5), (3, 2, 2), (1, 2, 3), (3, 1, 13), (3, 2, 9), (5, 1, 6), (5, 2, 3)] {
                    let x = values(ci * h * w, seed as u64 + 11);
                    let wt: Vec<f32> = values(co * ci * k * k, seed as u64 + 23).iter().map(|v| v * 0.3).collect();
                    let b = values(co, seed as u64 + 37);
                    let op = DirectConv::with_isa(&wt, b.clone(), co, ci, k, s, true, isa).expect("valid shape");
                    let (oh, ow) = op.out_size(h, w).expect("output size");
                    let want = naive(&x, ci, h, w, &wt, &b, co, k, s, true);
                    let mut got = vec![f32::NAN; co * oh * ow];
                    op.forward_into(&x, h, w, None, as_uninit(&mut got)).expect("forward");
                    let d = max_diff(&got, &want);
                    assert!(d < 1e-4, "{isa:?} ci{ci} {h}x{w} k{k} s{s} co{co}: {d}");
                    // Residual, and no activation.
                    let r = values(got.len(), 99);
                    let lin = DirectConv::with_isa(&wt, b.clone(), co, ci, k, s, false, isa).expect("valid shape");
                    lin.forward_into(&x, h, w, Some(&r), as_uninit(&mut got)).expect("forward");
                    let want_lin: Vec<f32> = naive(&x, ci, h, w, &wt, &b, co, k, s, false).iter().zip(&r).map(|(a, r)| a + r).collect();
                    let d = max_diff(&got, &want_lin);
                    assert!(d < 1e-4, "{isa:?} residual ci{ci} {h}x{w} k{k} s{s} co{co}: {d}");
                }
            }
        }
    }

    /// A 1x1 conv over parts equals the same conv over their concatenation, for every kernel,
    /// with a map size whose last tile is partial (the zero-padded tail copy).
    #[test]
    fn parts_equal_the_concatenation() {
        for isa in Isa::available() {
            let (h, w) = (9, 13);
            let (a, b, c) = (values(5 * h * w, 1), values(64 * h * w, 2), values(3 * h * w, 3));
            let wt = values(7 * 72, 4);
            let bias = values(7, 5);
            let op = DirectConv::with_isa(&wt, bias, 7, 72, 1, 1, true, isa).expect("valid shape");
            let cat: Vec<f32> = [a.clone(), b.clone(), c.clone()].concat();
            let (mut want, mut got) = (vec![0f32; 7 * h * w], vec![0f32; 7 * h * w]);
            op.forward_into(&cat, h, w, None, as_uninit(&mut want)).expect("forward");
            op.forward_parts_into(&[&a, &b, &c], h, w, as_uninit(&mut got)).expect("parts");
            assert!(max_diff(&got, &want) < 1e-5, "{isa:?}");
            assert!(op.forward_parts_into(&[&a, &b], h, w, as_uninit(&mut got)).is_err(), "the channel count is checked");
        }
    }

    #[test]
    fn shapes_are_checked_not_trusted() {
        assert!(DirectConv::new(&[0.0; 4], vec![0.0], 1, 1, 2, 1, true).is_err(), "even kernel");
        assert!(DirectConv::new(&[0.0; 9], vec![0.0], 1, 1, 3, 3, true).is_err(), "stride 3");
        assert!(DirectConv::new(&[0.0; 8], vec![0.0], 1, 1, 3, 1, true).is_err(), "weight count");
        let op = DirectConv::new(&[0.0; 9], vec![0.0], 1, 1, 3, 1, true).expect("valid");
        assert!(op.forward_into(&[0.0; 4], 2, 3, None, as_uninit(&mut [0.0; 6])).is_err(), "input size");
        assert!(op.forward_into(&[0.0; 6], 2, 3, None, as_uninit(&mut [0.0; 5])).is_err(), "output size");
        assert!(op.forward_into(&[], 0, 0, None, as_uninit(&mut [])).is_err(), "empty input");
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
