#!/usr/bin/env python3
"""Photo-by-photo comparison of `crowd eval --json` reports, as markdown (docs/calibration.md).

    crowd eval DIR --json --counting auto   > auto.json
    crowd eval DIR --json --counting fusion > fusion.json
    tools/calibration/compare.py auto=auto.json fusion.json=fusion.json [...]

Each argument is LABEL=REPORT; several reports of one label (e.g. the dev and crowds folders)
are joined: auto=dev-auto.json,crowds-auto.json. Prints one row per photo (truth, each label's
count and method) and one row per density band (MAE, mean relative error, median time) and the
photos counted under half or over twice their truth.
"""

import json
import statistics
import sys

BANDS = [("sparse", 0, 39), ("medium", 40, 99), ("dense", 100, 999), ("very dense", 1000, 10**9)]


def load(spec: str) -> tuple[str, dict]:
    label, _, files = spec.partition("=")
    if not files:
        sys.exit(f"expected LABEL=REPORT[,REPORT...], got {spec!r}")
    photos = {}
    for path in files.split(","):
        with open(path) as f:
            for p in json.load(f)["photos"]:
                photos[p["file"]] = p
    return label, photos


def band_of(truth: int) -> str:
    return next(name for name, low, high in BANDS if low <= truth <= high)


def main() -> None:
    reports = [load(a) for a in sys.argv[1:]]
    if not reports:
        sys.exit(__doc__)
    files = sorted(reports[0][1], key=lambda f: (reports[0][1][f]["true_count"], f))
    labels = [label for label, _ in reports]
    print("| photo | true | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for f in files:
        truth = reports[0][1][f]["true_count"]
        cells = []
        for _, photos in reports:
            p = photos.get(f)
            cells.append("—" if p is None else f"{p['count']} ({p['method']})")
        print(f"| {f} | {truth} | " + " | ".join(cells) + " |")
    print()
    print("| band | photos | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for name, _, _ in BANDS:
        in_band = [f for f in files if band_of(reports[0][1][f]["true_count"]) == name]
        if not in_band:
            continue
        cells = []
        for _, photos in reports:
            ps = [photos[f] for f in in_band if f in photos]
            mae = sum(abs(p["count"] - p["true_count"]) for p in ps) / len(ps)
            mre = sum(abs(p["count"] - p["true_count"]) / max(p["true_count"], 1) for p in ps) / len(ps)
            ms = statistics.median(p["total_ms"] for p in ps)
            cells.append(f"MAE {mae:.2f}, MRE {100 * mre:.1f} %, {ms:.0f} ms")
        print(f"| {name} | {len(in_band)} | " + " | ".join(cells) + " |")
    for label, photos in reports:
        off = [
            f"{f} ({p['count']} for {p['true_count']})"
            for f, p in sorted(photos.items())
            if p["count"] * 2 < p["true_count"] or p["count"] > 2 * p["true_count"]
        ]
        print(f"\n{label}: under half or over twice their truth: {', '.join(off) or 'none'}")


if __name__ == "__main__":
    main()
