#!/usr/bin/env python3
"""ONNX Runtime reference for ServiceBay's vision parity tests and benchmark.

Owns: the fixture directory the Rust parity tests read (default
$HOME/.cache/servicebay/ort-fixtures) and the ORT side of the speed table.

  ort-reference.py fixtures [--models DIR] [--out DIR]
      For yolov8n.onnx and fall-best_fp16.onnx on bus.jpg, zidane.jpg and two synthetic PNGs
      (made here, deterministic), writes NAME__IMAGE.input.bin (the [1,3,640,640] f32 input,
      produced with exactly our letterbox: OpenCV-geometry bilinear in f32 with the same
      operation order as src/vision/preprocess.rs) and NAME__IMAGE.output.bin (ORT's raw
      output0), little-endian f32, plus manifest.json. Idempotent: skips when the manifest
      matches the model hashes.

  ort-reference.py bench --models DIR --images A.jpg B.jpg [--threads 2] [--runs 10]
      Prints JSON with ORT median preprocess / forward / NMS milliseconds.

  ort-reference.py profile --models DIR --images A.jpg B.jpg [--threads 2] [--runs 10]
      ORT's own per-node profiler over the runs, summed per Ultralytics block (model.N, from
      the node names of the export) and per op type: one JSON object of median milliseconds
      per forward (benches/vision.rs prints it beside ours with BENCH_PROFILE=1).

  ort-reference.py serve --models DIR [--model yolov8n.onnx] [--threads 2]
      Reads image paths on stdin, runs the ORT pipeline once per line, prints one JSON line of
      timings each (used by benches/vision.rs to interleave ORT and candle runs).

Needs a venv with onnxruntime, numpy, pillow (the Rust tests create none: see the README).
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
from PIL import Image, ImageOps

SIZE = 640
VERSION = 2  # bump when the fixture format or the letterbox changes
MODELS = [("yolov8n", "yolov8n.onnx"), ("fall", "fall-best_fp16.onnx")]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_rgb(path):
    img = Image.open(path)
    img = ImageOps.exif_transpose(img)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def geometry(w, h, size=SIZE):
    r = min(size / h, size / w)
    nw = min(max(int(round(w * r)), 1), size)
    nh = min(max(int(round(h * r)), 1), size)
    dw, dh = (size - nw) / 2.0, (size - nh) / 2.0
    left = max(int(round(dw - 0.1)), 0)
    top = max(int(round(dh - 0.1)), 0)
    return r, nw, nh, left, top


def taps(dst, src):
    scale = np.float32(src) / np.float32(dst)
    s = (np.arange(dst, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    s = np.maximum(s, np.float32(0.0))
    i0 = np.minimum(np.floor(s).astype(np.int64), src - 1)
    i1 = np.minimum(i0 + 1, src - 1)
    f = (s - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, f


def resize_exact(rgb, nw, nh):
    """Bit-identical to preprocess::resize_bilinear (same f32 operations, same order)."""
    h, w, _ = rgb.shape
    if (w, h) == (nw, nh):
        return rgb
    x0, x1, fx = taps(nw, w)
    y0, y1, fy = taps(nh, h)
    src = rgb.astype(np.float32)
    fx = fx[None, :, None]
    fy = fy[:, None, None]
    one = np.float32(1.0)
    r0 = src[y0]
    r1 = src[y1]
    top = r0[:, x0] * (one - fx) + r0[:, x1] * fx
    bot = r1[:, x0] * (one - fx) + r1[:, x1] * fx
    v = top * (one - fy) + bot * fy
    return np.clip(np.floor(v + np.float32(0.5)), 0, 255).astype(np.uint8)


def letterbox(rgb, resize=resize_exact):
    h, w, _ = rgb.shape
    r, nw, nh, left, top = geometry(w, h)
    canvas = np.full((SIZE, SIZE, 3), 114, dtype=np.uint8)
    canvas[top:top + nh, left:left + nw] = resize(rgb, nw, nh)
    chw = canvas.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    return chw[None].copy(), (r, left, top)


def resize_pil(rgb, nw, nh):
    return np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR))


def synthetic_images(out):
    """Two deterministic PNG scenes: a gradient with blocks, and seeded noise with a 'car'."""
    paths = []
    yy, xx = np.mgrid[0:480, 0:720]
    a = np.stack([(xx * 255 // 719), (yy * 255 // 479), ((xx + yy) % 256)], -1).astype(np.uint8)
    a[100:300, 150:550] = (200, 30, 30)
    a[250:330, 180:260] = (20, 20, 20)
    a[250:330, 440:520] = (20, 20, 20)
    p = os.path.join(out, "synth-blocks.png")
    Image.fromarray(a).save(p)
    paths.append(p)
    rng = np.random.default_rng(1234)
    b = rng.integers(0, 256, size=(900, 600, 3), dtype=np.uint8)
    b[300:600, 100:500] = (240, 240, 245)
    p = os.path.join(out, "synth-noise.png")
    Image.fromarray(b).save(p)
    paths.append(p)
    return paths


def session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def cmd_fixtures(args):
    out = args.out
    os.makedirs(out, exist_ok=True)
    want = {name: sha256(os.path.join(args.models, f)) for name, f in MODELS}
    manifest_path = os.path.join(out, "manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            old = json.load(f)
        if old.get("version") == VERSION and old.get("models") == want:
            print(f"fixtures up to date in {out}")
            return
    images = [os.path.join(args.models, "bus.jpg"), os.path.join(args.models, "zidane.jpg")]
    images += synthetic_images(out)
    entries = []
    for name, f in MODELS:
        sess = session(os.path.join(args.models, f), 2)
        for img_path in images:
            x, (r, left, top) = letterbox(load_rgb(img_path))
            y = sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float32)
            stem = os.path.splitext(os.path.basename(img_path))[0]
            base = f"{name}__{stem}"
            x.astype("<f4").tofile(os.path.join(out, base + ".input.bin"))
            y.astype("<f4").tofile(os.path.join(out, base + ".output.bin"))
            entries.append({"model": name, "model_file": f, "image": img_path, "base": base,
                            "output_shape": list(y.shape), "scale": r, "pad_left": left, "pad_top": top})
            print(f"{base}: output {list(y.shape)}")
    with open(manifest_path, "w") as f:
        json.dump({"version": VERSION, "models": want, "entries": entries}, f, indent=1)
    print(f"wrote {len(entries)} fixtures to {out}")


def nms_numpy(raw, conf=0.25, iou=0.7, max_det=300):
    """Ultralytics-style decode + class-wise greedy NMS, vectorised numpy."""
    p = raw[0]
    scores = p[4:].max(0)
    cls = p[4:].argmax(0)
    keep = scores > conf
    b, s, c = p[:4, keep].T, scores[keep], cls[keep]
    xyxy = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)
    off = xyxy + c[:, None] * 7680.0
    order = s.argsort()[::-1]
    out = []
    while order.size and len(out) < max_det:
        i = order[0]
        out.append(i)
        xx1 = np.maximum(off[i, 0], off[order[1:], 0])
        yy1 = np.maximum(off[i, 1], off[order[1:], 1])
        xx2 = np.minimum(off[i, 2], off[order[1:], 2])
        yy2 = np.minimum(off[i, 3], off[order[1:], 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        a = (off[i, 2] - off[i, 0]) * (off[i, 3] - off[i, 1])
        bb = (off[order[1:], 2] - off[order[1:], 0]) * (off[order[1:], 3] - off[order[1:], 1])
        order = order[1:][inter / (a + bb - inter + 1e-9) <= iou]
    return xyxy[out], s[out], c[out]


def cmd_bench(args):
    sess = session(os.path.join(args.models, args.model), args.threads)
    name = sess.get_inputs()[0].name
    pre, fwd, post = [], [], []
    for img_path in args.images:
        for run in range(args.runs + 1):
            t0 = time.perf_counter()
            # A realistic ORT pipeline: C decoders/resizers (PIL), numpy padding.
            x, _ = letterbox(load_rgb(img_path), resize=resize_pil)
            t1 = time.perf_counter()
            y = sess.run(None, {name: x})[0]
            t2 = time.perf_counter()
            nms_numpy(y)
            t3 = time.perf_counter()
            if run == 0:
                continue  # warm-up
            pre.append((t1 - t0) * 1e3)
            fwd.append((t2 - t1) * 1e3)
            post.append((t3 - t2) * 1e3)
    med = lambda v: float(np.median(v))
    print(json.dumps({"preprocess_ms": med(pre), "forward_ms": med(fwd), "nms_ms": med(post),
                      "runs": len(fwd), "threads": args.threads}))


def block_of(node_name):
    """'/model.12/cv1/conv/Conv' -> 'model.12'; nodes outside a block (the export's decode
    tail) -> 'other'."""
    parts = node_name.strip("/").split("/")
    return parts[0] if parts and parts[0].startswith("model.") else "other"


def cmd_profile(args):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"ort-profile-{os.getpid()}")
    sess = ort.InferenceSession(os.path.join(args.models, args.model), sess_options=so,
                                providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    inputs = [letterbox(load_rgb(p), resize=resize_pil)[0] for p in args.images]
    sess.run(None, {name: inputs[0]})  # warm-up, dropped below
    n = 0
    for _ in range(args.runs):
        for x in inputs:
            sess.run(None, {name: x})
            n += 1
    path = sess.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    # Per run: node kernel times (us) summed per block and per op type.
    per_block, per_op, per_run = [], [], []
    start = runs[1]["ts"] if len(runs) > 1 else 0  # skip the warm-up run
    for r in runs[1:]:
        lo, hi = r["ts"], r["ts"] + r["dur"]
        blocks, ops = {}, {}
        for e in events:
            if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
                continue
            if not (lo <= e["ts"] <= hi):
                continue
            b = block_of(e["name"][: -len("_kernel_time")])
            op = e.get("args", {}).get("op_name", "?")
            blocks[b] = blocks.get(b, 0.0) + e["dur"] / 1e3
            ops[op] = ops.get(op, 0.0) + e["dur"] / 1e3
        per_block.append(blocks)
        per_op.append(ops)
        per_run.append(r["dur"] / 1e3)
    def medians(rows):
        keys = sorted({k for r in rows for k in r})
        return {k: float(np.median([r.get(k, 0.0) for r in rows])) for k in keys}
    print(json.dumps({"runs": len(per_run), "threads": args.threads, "model_run_ms": float(np.median(per_run)),
                      "blocks_ms": medians(per_block), "ops_ms": medians(per_op)}))


def cmd_serve(args):
    """One pipeline run per image path read on stdin; one JSON line of timings per run.
    Lets the Rust bench interleave ORT and candle runs so both see the same machine load."""
    sess = session(os.path.join(args.models, args.model), args.threads)
    name = sess.get_inputs()[0].name
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        img_path = line.strip()
        if not img_path:
            break
        c0, t0 = time.process_time(), time.perf_counter()
        x, _ = letterbox(load_rgb(img_path), resize=resize_pil)
        t1 = time.perf_counter()
        y = sess.run(None, {name: x})[0]
        c2, t2 = time.process_time(), time.perf_counter()
        nms_numpy(y)
        c3, t3 = time.process_time(), time.perf_counter()
        print(json.dumps({"preprocess_ms": (t1 - t0) * 1e3, "forward_ms": (t2 - t1) * 1e3,
                          "nms_ms": (t3 - t2) * 1e3, "cpu_ms": (c3 - c0) * 1e3}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("--models", default=os.environ.get("SERVICEBAY_MODELS", "models"))
    f.add_argument("--out", default=os.path.join(os.path.expanduser("~"), ".cache/servicebay/ort-fixtures"))
    def engine(name, images):
        """A subcommand that runs the model: bench and profile over images, serve over stdin."""
        p = sub.add_parser(name)
        p.add_argument("--models", default=os.environ.get("SERVICEBAY_MODELS", "models"))
        p.add_argument("--model", default="yolov8n.onnx")
        p.add_argument("--threads", type=int, default=2)
        if images:
            p.add_argument("--images", nargs="+", required=True)
            p.add_argument("--runs", type=int, default=10)
    engine("bench", True)
    engine("profile", True)
    engine("serve", False)
    args = ap.parse_args()
    {"fixtures": cmd_fixtures, "bench": cmd_bench, "profile": cmd_profile, "serve": cmd_serve}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
