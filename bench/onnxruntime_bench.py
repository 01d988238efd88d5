#!/usr/bin/env python3
"""Time one ONNX model under onnxruntime on the exact input tract sees, as a reference
for our tract figures. Prints one JSON line so results can be collected by scripts."""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="ONNX model path")
    p.add_argument("--input", required=True, help="raw little-endian float32 tensor file")
    p.add_argument("--shape", required=True, help="comma-separated, e.g. 1,512,512,3")
    p.add_argument("--threads", type=int, required=True, help="intra-op threads")
    p.add_argument("--runs", type=int, required=True, help="timed runs")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    a = p.parse_args()

    try:
        shape = tuple(int(d) for d in a.shape.split(","))
    except ValueError:
        sys.exit(f"error: --shape {a.shape!r} is not a comma-separated list of integers")
    if a.threads < 1 or a.runs < 1 or a.warmup < 0 or any(d < 1 for d in shape):
        sys.exit("error: --threads, --runs and every --shape dimension must be >= 1, --warmup >= 0")

    # The Rust side dumps the preprocessed tensor verbatim; a size mismatch means the wrong
    # shape or a different dump, and silently reshaping would benchmark garbage.
    expected = int(np.prod(shape)) * 4
    if not os.path.isfile(a.input):
        sys.exit(f"error: input file {a.input} not found")
    actual = os.path.getsize(a.input)
    if actual != expected:
        sys.exit(f"error: {a.input} has {actual} bytes, but shape {shape} of float32 needs {expected}")
    x = np.fromfile(a.input, dtype="<f4").reshape(shape)

    # Match tract's setup: one inference at a time, parallelism only inside operators, so the
    # thread count compared is the same knob on both sides.
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])

    inputs = sess.get_inputs()
    if len(inputs) != 1:
        sys.exit(f"error: model has {len(inputs)} inputs, this benchmark feeds exactly one")
    feed = {inputs[0].name: x}

    for _ in range(a.warmup):
        sess.run(None, feed)
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        outs = sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000.0)

    # Output sums are a cheap fingerprint to check both runtimes computed the same thing.
    names = [o.name for o in sess.get_outputs()]
    print(json.dumps({
        "runtime": "onnxruntime",
        "version": ort.__version__,
        "model": os.path.basename(a.model),
        "threads": a.threads,
        "runs": a.runs,
        "median_ms": round(statistics.median(times), 3),
        "min_ms": round(min(times), 3),
        "outputs": {n: float(np.asarray(o, dtype=np.float64).sum()) for n, o in zip(names, outs)},
    }))


if __name__ == "__main__":
    main()
