#!/usr/bin/env python3
"""Check the CSRNet ONNX (float16-stored) against the float32 build with onnxruntime.

Needs numpy, onnxruntime and Pillow (checking only; convert.sh does not need them).

Usage:
  check_onnxruntime.py F16.onnx F32.onnx PHOTO_DIR [--sizes 512,full] [--threads 1]

PHOTO_DIR holds the photos and a truth.csv (file,true_count,density,source).
Each photo is opened honouring its EXIF orientation, converted to RGB, resized
(bilinear) so its long side is the given size (`full` = as is), scaled to 0-1,
normalised with ImageNet mean/std, fed as NCHW float32; count = sum of the map.
"""

import argparse
import csv
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(path, long_side):
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    if long_side is not None:
        w, h = img.size
        s = long_side / max(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
    x = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
    return x.transpose(2, 0, 1)[None].copy(), img.size


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    t = time.perf_counter()
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("f16")
    ap.add_argument("f32")
    ap.add_argument("photos")
    ap.add_argument("--sizes", default="512,full")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    s16, l16 = session(a.f16, a.threads)
    s32, l32 = session(a.f32, a.threads)
    print(f"onnxruntime {ort.__version__}, {a.threads} thread(s); "
          f"load f16-stored {l16:.2f} s, f32 {l32:.2f} s")
    for name, s in (("f16-stored", s16), ("f32", s32)):
        for io, kind in ((s.get_inputs(), "in"), (s.get_outputs(), "out")):
            for v in io:
                print(f"  {name} {kind}: {v.name} {v.type} {v.shape}")

    with open(os.path.join(a.photos, "truth.csv"), newline="") as f:
        rows = list(csv.DictReader(f))

    for size in a.sizes.split(","):
        long_side = None if size == "full" else int(size)
        print(f"\n== long side {size} ==")
        print(f"{'file':20s} {'kind':7s} {'input':>10s} {'true':>5s} {'f32':>8s} "
              f"{'f16st':>8s} {'f16-f32':>8s} {'maxdiff':>8s} {'t_f32':>6s} {'t_f16':>6s}")
        stats = {}
        for r in rows:
            x, (w, h) = preprocess(os.path.join(a.photos, r["file"]), long_side)
            t = time.perf_counter()
            d32 = s32.run(["density"], {"image": x})[0]
            t32 = time.perf_counter() - t
            t = time.perf_counter()
            d16 = s16.run(["density"], {"image": x})[0]
            t16 = time.perf_counter() - t
            assert d16.shape == d32.shape == (1, 1, h // 8, w // 8), (d16.shape, h, w)
            c32, c16 = float(d32.sum(dtype=np.float64)), float(d16.sum(dtype=np.float64))
            true = int(r["true_count"])
            print(f"{r['file']:20s} {r['density']:7s} {w:4d}x{h:<5d} {true:5d} {c32:8.2f} "
                  f"{c16:8.2f} {c16 - c32:+8.3f} {float(np.abs(d16 - d32).max()):8.2e} "
                  f"{t32:6.2f} {t16:6.2f}")
            st = stats.setdefault(r["density"], [])
            st.append((true, c32, c16, t32, t16))
            sys.stdout.flush()
        print("summary per kind (mean over photos):")
        for kind, st in stats.items():
            st = np.array(st)
            true, c32, c16, t32, t16 = st.T
            print(f"  {kind:7s} n={len(st):2d} true {true.mean():7.1f} f32 {c32.mean():7.1f} "
                  f"f16st {c16.mean():7.1f} | f32 err {np.mean(c32 - true):+7.1f} "
                  f"(rel {np.mean((c32 - true) / true) * 100:+6.1f}%) | "
                  f"|f16-f32| max {np.abs(c16 - c32).max():.3f} "
                  f"(rel max {np.max(np.abs(c16 - c32) / np.abs(c32)) * 100:.3f}%) | "
                  f"t f32 {t32.mean():.2f} s, f16st {t16.mean():.2f} s")


if __name__ == "__main__":
    main()
