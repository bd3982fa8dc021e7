//! Activations on the CPU in a blocked-channel layout (NCHW16c), kept from layer to layer, and
//! the few non-convolution steps YOLOv8 has (split, 2x upsample, 5x5 max-pool) written for it.
//!
//! Why this layout: the convolution kernel (`conv_kernel.rs`) vectorises over 16 output
//! channels and broadcasts one input value at a time, the way ONNX Runtime's MLAS does. An
//! earlier kernel that vectorised over pixels of plain NCHW had to pad (and, for stride 2, split)
//! a copy of every layer's input, and its 1x1 convolutions over few channels ran at half the
//! speed of its 3x3 ones. With the layout kept between layers no layer copies its input.
//!
//! Layout of an [`Act`] with `c` channels of `h x w`, `lanes` channels to a block:
//! - `ceil(c / lanes)` blocks one after another; block `b` is `[h + 2][w + 2][lanes]`, and
//!   channel `b * lanes + l` at pixel `(y, x)` sits at `((y + 1) * (w + 2) + x + 1) * lanes + l`.
//!
//! Invariants:
//! - The one-pixel border of every block is zero: a 3x3 "same" convolution reads it as its
//!   padding. Lanes past `c` in the last block are zero everywhere.
//! - [`SLACK`] readable floats follow the last block: a tile may read a few positions past the
//!   end of a row (what it computes there is never stored).
//! - `lanes` is [`LANES`] for every layer's output; the network input has one channel to a
//!   block (an RGB image in blocks of 16 would be 16/3 times the work of the first conv).
//! - Buffers are shared and never written once built: C2f's two halves are views of its first
//!   convolution's output.

use std::mem::MaybeUninit;
use std::sync::Arc;

use rayon::prelude::*;

/// Channels to a block: one AVX-512 vector of f32.
pub const LANES: usize = 16;
/// Zero floats after the last block of every buffer (see the invariants).
const SLACK: usize = 64 * LANES;

/// One activation (a batch of one image) in the blocked layout.
#[derive(Debug, Clone)]
pub struct Act {
    buf: Arc<Vec<f32>>,
    /// First float of block 0 in `buf` (views start later).
    start: usize,
    c: usize,
    h: usize,
    w: usize,
    lanes: usize,
}

impl Act {
    pub fn c(&self) -> usize {
        self.c
    }

    pub fn h(&self) -> usize {
        self.h
    }

    pub fn w(&self) -> usize {
        self.w
    }

    pub fn lanes(&self) -> usize {
        self.lanes
    }

    pub fn blocks(&self) -> usize {
        self.c.div_ceil(self.lanes)
    }

    /// Floats per block.
    pub fn block_len(&self) -> usize {
        (self.h + 2) * (self.w + 2) * self.lanes
    }

    /// The blocks from block 0 on, and the slack (or a later view's blocks) after them.
    pub fn data(&self) -> &[f32] {
        &self.buf[self.start..]
    }

    /// A new activation whose border, padding lanes and slack are zero; `fill` gets the blocks
    /// (without the slack) and must write every lane of every interior position of every block
    /// (callers check their shapes first: nothing may fail once the buffer is being built).
    pub fn build(c: usize, h: usize, w: usize, lanes: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Act {
        let (wp, hp) = (w + 2, h + 2);
        let block = hp * wp * lanes;
        let n = c.div_ceil(lanes) * block;
        let mut v: Vec<f32> = Vec::with_capacity(n + SLACK);
        let (body, slack) = v.spare_capacity_mut()[..n + SLACK].split_at_mut(n);
        slack.fill(MaybeUninit::new(0.0));
        let row = wp * lanes;
        // Serial: a border is a few thousand floats, less than a parallel task costs.
        body.chunks_mut(block).for_each(|b| {
            b[..row].fill(MaybeUninit::new(0.0));
            b[(hp - 1) * row..].fill(MaybeUninit::new(0.0));
            for y in 1..hp - 1 {
                b[y * row..y * row + lanes].fill(MaybeUninit::new(0.0));
                b[(y + 1) * row - lanes..(y + 1) * row].fill(MaybeUninit::new(0.0));
            }
        });
        fill(body);
        // SAFETY: the border and slack were written above, and every caller of `build` writes
        // every interior position of every block in `fill` (its contract).
        unsafe { v.set_len(n + SLACK) };
        Act { buf: Arc::new(v), start: 0, c, h, w, lanes }
    }

    /// `f(b, y, row)` over every interior row `y` of every block `b` of a buffer being built,
    /// in parallel; `row` is the row's `w * lanes` interior floats.
    fn fill_rows(
        body: &mut [MaybeUninit<f32>],
        (h, w, lanes): (usize, usize, usize),
        f: impl Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync,
    ) {
        let (row, rows) = ((w + 2) * lanes, body.len() / ((w + 2) * lanes));
        body.par_chunks_mut(row).with_min_len(rows_per_task(rows)).enumerate().for_each(|(i, r)| {
            let (b, y) = (i / (h + 2), i % (h + 2));
            if (1..=h).contains(&y) {
                f(b, y - 1, &mut r[lanes..(w + 1) * lanes]);
            }
        });
    }

    /// From one CHW image (`c * h * w` values), or None when the length does not match.
    pub fn from_chw(x: &[f32], c: usize, h: usize, w: usize, lanes: usize) -> Option<Act> {
        if x.len() != c * h * w || c == 0 || h == 0 || w == 0 || lanes == 0 {
            return None;
        }
        Some(Act::build(c, h, w, lanes, |body| {
            Act::fill_rows(body, (h, w, lanes), |b, y, row| {
                if lanes == 1 {
                    // The network's input: each block is one channel, a plain copy per row.
                    init_from(row, &x[(b * h + y) * w..(b * h + y + 1) * w]);
                    return;
                }
                for (l, lane) in (0..lanes).map(|l| (l, b * lanes + l)) {
                    let src = (lane < c).then(|| &x[(lane * h + y) * w..(lane * h + y + 1) * w]);
                    for xx in 0..w {
                        row[xx * lanes + l].write(src.map_or(0.0, |s| s[xx]));
                    }
                }
            });
        }))
    }

    /// Back to CHW (`c * h * w` values).
    pub fn to_chw(&self) -> Vec<f32> {
        let (h, w, l, bl) = (self.h, self.w, self.lanes, self.block_len());
        let data = self.data();
        let mut out = vec![0f32; self.c * h * w];
        out.par_chunks_mut(h * w).enumerate().for_each(|(ci, plane)| {
            let blk = &data[(ci / l) * bl..];
            for (y, dst) in plane.chunks_exact_mut(w).enumerate() {
                let src = &blk[((y + 1) * (w + 2) + 1) * l + ci % l..];
                dst.iter_mut().zip(src.iter().step_by(l)).for_each(|(d, s)| *d = *s);
            }
        });
        out
    }

    /// The first and second half of the channels, as views (C2f's split), or None when the
    /// halves do not start on a block boundary.
    pub fn halves(&self) -> Option<[Act; 2]> {
        let half = self.c / 2;
        if self.c % 2 != 0 || half % self.lanes != 0 || half == 0 {
            return None;
        }
        let first = Act { c: half, ..self.clone() };
        let second = Act { start: self.start + (half / self.lanes) * self.block_len(), ..first.clone() };
        Some([first, second])
    }

    /// Nearest-neighbour 2x upsampling (the neck's `nn.Upsample(scale_factor=2)`).
    pub fn upsample2x(&self) -> Act {
        let (h, w, l) = (self.h, self.w, self.lanes);
        let (bl, data) = (self.block_len(), self.data());
        Act::build(self.c, 2 * h, 2 * w, l, |body| {
            Act::fill_rows(body, (2 * h, 2 * w, l), |b, y, row| {
                let src = &data[b * bl + ((y / 2 + 1) * (w + 2) + 1) * l..][..w * l];
                for (pair, px) in row.chunks_exact_mut(2 * l).zip(src.chunks_exact(l)) {
                    let (a, b) = pair.split_at_mut(l);
                    init_from(a, px);
                    init_from(b, px);
                }
            });
        })
    }

    /// `nn.MaxPool2d(5, 1, 2)`: the border counts as -inf, never as the layout's zeros (SPPF's
    /// input is post-SiLU and can be negative). Separable: a row pass into a scratch map, then a
    /// column pass; each is the element-wise maximum of the window's shifted slices, clipped to
    /// the map, which vectorises.
    pub fn max_pool5(&self) -> Act {
        let (h, w, l) = (self.h, self.w, self.lanes);
        let (bl, data) = (self.block_len(), self.data());
        // Row pass: `[blocks][h][w * l]`, no border.
        let mut rows = vec![0f32; self.blocks() * h * w * l];
        rows.par_chunks_mut(w * l).with_min_len(rows_per_task(self.blocks() * h)).enumerate().for_each(|(i, dst)| {
            let (b, y) = (i / h, i % h);
            let src = &data[b * bl + ((y + 1) * (w + 2) + 1) * l..][..w * l];
            dst.copy_from_slice(src);
            for d in (1..=2).filter(|d| *d < w).map(|d| d * l) {
                max_into(&mut dst[..w * l - d], &src[d..]);
                max_into(&mut dst[d..], &src[..w * l - d]);
            }
        });
        Act::build(self.c, h, w, l, |body| {
            Act::fill_rows(body, (h, w, l), |b, y, row| {
                let plane = &rows[b * h * w * l..][..h * w * l];
                let at = |yy: usize| &plane[yy * w * l..][..w * l];
                let row = init_from(row, at(y));
                for yy in (y.saturating_sub(2)..(y + 3).min(h)).filter(|yy| *yy != y) {
                    max_into(row, at(yy));
                }
            });
        })
    }
}

/// Rows per parallel task out of `rows`: about four tasks per thread. A row of a small map is
/// less work than a task costs (YOLOv8n's 20x20 upsampling and pooling spent more time in
/// rayon than in copying).
fn rows_per_task(rows: usize) -> usize {
    (rows / (4 * rayon::current_num_threads().max(1))).max(1)
}

/// `dst[i] = max(dst[i], src[i])`.
fn max_into(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d = d.max(*s));
}

/// `dst` written with `src`, as the initialised floats it now holds.
fn init_from<'a>(dst: &'a mut [MaybeUninit<f32>], src: &[f32]) -> &'a mut [f32] {
    assert_eq!(dst.len(), src.len());
    dst.iter_mut().zip(src).for_each(|(d, s)| {
        d.write(*s);
    });
    // SAFETY: every element was just written; MaybeUninit<f32> has f32's layout.
    unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Runs `f` on a worker of rayon's global pool while the other workers poll for its tasks,
/// instead of sleeping between them, until `f` returns.
///
/// Why: a forward pass is ~80 fork-joins, a few hundred microseconds apart. Rayon's idle workers
/// fall asleep within microseconds, and on a virtual machine waking a halted vCPU takes long
/// enough that YOLOv8n on two threads took 41 to 75 ms from one run to the next (ONNX Runtime,
/// whose workers spin, 44 to 46). The cost: the other cores are busy for the length of `f`.
/// Called from any thread; on a pool of one thread it simply runs `f` there.
///
/// Invariant (no deadlock when passes run concurrently): a thread that is running some `f`, at
/// any depth of its stack, never spins in a helper: it returns from the helper at once. Else two
/// passes could each wait in a join on a thread that spins for the other pass to end.
pub fn on_awake_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, Ordering};
    thread_local! {
        static RUNNING: Cell<u32> = const { Cell::new(0) };
    }
    /// Marks this thread as running an `f` until dropped.
    struct Running;
    impl Running {
        fn enter() -> Running {
            RUNNING.with(|r| r.set(r.get() + 1));
            Running
        }
    }
    impl Drop for Running {
        fn drop(&mut self) {
            RUNNING.with(|r| r.set(r.get() - 1));
        }
    }
    struct SetOnDrop<'a>(&'a AtomicBool);
    impl Drop for SetOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let done = AtomicBool::new(false);
    let done = &done;
    rayon::scope(|s| {
        for _ in 1..rayon::current_num_threads() {
            s.spawn(move |_| {
                if RUNNING.with(Cell::get) > 0 {
                    return;
                }
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        // Set even if `f` panics, so the helpers end and the scope can unwind.
        let _done = SetOnDrop(done);
        let _running = Running::enter();
        f()
    })
}

/// Keeps freed activation buffers in the heap for the next forward pass (glibc only).
///
/// Every layer's output is a fresh `Vec`. glibc serves allocations above its mmap threshold
/// with `mmap` and gives them back on free, so each forward pass page-faulted its ~60 MB of
/// activations in again: the kernel's page clearing took a third as long as the convolutions
/// themselves (`perf`, YOLOv8n). With a fixed 32 MB threshold (glibc's maximum; YOLOv8's largest
/// buffer is ~7 MB at 640) and no heap trimming below 512 MB, freed buffers are reused.
/// Process-wide and idempotent; the cost is that the heap keeps its peak size.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::conv_kernel::test_values as values;

    /// Every float outside the interior's real channels is zero (the layout's invariant).
    fn border_and_padding_are_zero(a: &Act) -> bool {
        let (h, w, l) = (a.h(), a.w(), a.lanes());
        let data = a.data();
        (0..a.blocks()).all(|b| {
            (0..h + 2).all(|y| {
                (0..w + 2).all(|x| {
                    (0..l).all(|lane| {
                        let inside = (1..=h).contains(&y) && (1..=w).contains(&x) && b * l + lane < a.c();
                        inside || data[b * a.block_len() + (y * (w + 2) + x) * l + lane] == 0.0
                    })
                })
            })
        }) && data[a.blocks() * a.block_len()..][..SLACK].iter().all(|v| *v == 0.0)
    }

    #[test]
    fn chw_round_trip_keeps_values_and_zeroes_the_rest() {
        for (c, h, w, lanes) in [(3, 5, 7, 1), (3, 5, 7, 16), (20, 4, 3, 16), (32, 1, 1, 16)] {
            let x = values(c * h * w, 7);
            let a = Act::from_chw(&x, c, h, w, lanes).expect("sizes match");
            assert_eq!(a.to_chw(), x, "c{c} {h}x{w} lanes {lanes}");
            assert!(border_and_padding_are_zero(&a));
        }
        assert!(Act::from_chw(&[0.0; 5], 1, 2, 3, 16).is_none(), "length is checked");
    }

    #[test]
    fn halves_are_views_of_the_channels() {
        let x = values(64 * 3 * 5, 3);
        let a = Act::from_chw(&x, 64, 3, 5, 16).expect("sizes match");
        let [p, q] = a.halves().expect("32 + 32 is block-aligned");
        assert_eq!(p.to_chw(), x[..32 * 15]);
        assert_eq!(q.to_chw(), x[32 * 15..]);
        assert!(Act::from_chw(&x[..40 * 15], 40, 3, 5, 16).expect("sizes").halves().is_none(), "20 + 20 is not");
    }

    #[test]
    fn upsample_repeats_each_pixel_twice_in_both_directions() {
        let (c, h, w) = (17, 3, 4);
        let x = values(c * h * w, 5);
        let up = Act::from_chw(&x, c, h, w, 16).expect("sizes").upsample2x();
        assert!(border_and_padding_are_zero(&up));
        let got = up.to_chw();
        for ci in 0..c {
            for y in 0..2 * h {
                for xx in 0..2 * w {
                    assert_eq!(got[(ci * 2 * h + y) * 2 * w + xx], x[(ci * h + y / 2) * w + xx / 2]);
                }
            }
        }
    }

    #[test]
    fn max_pool_sees_minus_infinity_beyond_the_border() {
        // Negative values everywhere: a zero border would show as a wrong maximum.
        let (c, h, w) = (18, 9, 6);
        let x: Vec<f32> = values(c * h * w, 9).iter().map(|v| v - 5.0).collect();
        let pooled = Act::from_chw(&x, c, h, w, 16).expect("sizes").max_pool5();
        assert!(border_and_padding_are_zero(&pooled));
        let got = pooled.to_chw();
        for ci in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    let mut m = f32::NEG_INFINITY;
                    for yy in y.saturating_sub(2)..(y + 3).min(h) {
                        for xi in xx.saturating_sub(2)..(xx + 3).min(w) {
                            m = m.max(x[(ci * h + yy) * w + xi]);
                        }
                    }
                    assert_eq!(got[(ci * h + y) * w + xx], m, "c{ci} ({y}, {xx})");
                }
            }
        }
    }
}
