"""furcate beside the peer (`peer.py`, the script a Python user writes
instead) on the same images and the same splits, one table.

  python compare.py --furcate target/release/furcate --config configs/default.toml \
      --test 0.1 0.95 --seeds 0 1 2 --out runs/peer [--manifest data/synthetic_near/manifest.csv]

Steps: `furcate extract` with an empty feature cache (cold, the whole
process timed); `furcate train` for each test fraction and seed (warm cache,
the whole process timed, `--no-report`); `peer.py` once over the splits
furcate made (it extracts once, then fits every split). Peak memory is each
process's ru_maxrss. Prints a Markdown table and writes it, with the raw
figures, to OUT/peer.md and OUT/peer.json. Take figures with nothing else
running.
"""
import argparse, json, os, re, subprocess, sys, time, tomllib

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("--furcate", required=True)
ap.add_argument("--config", required=True)
ap.add_argument("--test", nargs="+", type=float, default=[0.1, 0.95])
ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
ap.add_argument("--out", required=True)
ap.add_argument("--manifest", help="a data set's manifest.csv to use instead of the config's (same heads, same columns)")
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
out = os.path.abspath(a.out)
config_dir = os.path.dirname(os.path.abspath(a.config))
text = open(a.config).read()
cfg = tomllib.loads(text)
manifest = os.path.abspath(a.manifest) if a.manifest else os.path.join(config_dir, cfg["data"]["manifest"])
# The [data] lines of every furcate variant: the feature cache, and the manifest when --manifest names one.
data_lines = [f'manifest = "{manifest}"'] if a.manifest else []
# The input size of each tap: one EfficientNet-Lite0, or a `concat` of
# EfficientNet-Lite0 passes at several sizes (configs/default.toml), whose
# tap names do not repeat.
ex = cfg["extractor"]
passes = ex["extractors"] if ex["type"] == "concat" else [ex]
tap_size = {}
for part in passes:
    if part["type"] != "efficientnet_lite0":
        sys.exit("compare.py: the peer is EfficientNet-Lite0; the config's extractor is " + part["type"])
    for t in part.get("taps", ["head"]):
        tap_size[t] = part.get("size", 224)
heads = []
for h in cfg["heads"]:
    kind = {"classification": "class", "regression": "value"}.get(h["type"])
    taps = h.get("taps")
    if kind is None or not isinstance(taps, list):
        sys.exit(f"compare.py: head `{h['name']}` needs type classification or regression and a list of taps")
    # The peer is the script a user writes: every tap mean-pooled, so a
    # furcate tap's pool suffix (`stem.moments`) reads its plain tap there.
    bare = [t.rsplit(".", 1)[0] if t.rsplit(".", 1)[-1] in ("mean", "mean_std", "moments") else t for t in taps]
    sizes = {tap_size.get(t) for t in taps}
    if len(sizes) != 1 or None in sizes:
        sys.exit(f"compare.py: head `{h['name']}`: its taps must come from one pass of the extractor")
    heads.append((h["name"], h.get("column", h["name"]), kind, list(dict.fromkeys(bare)), sizes.pop()))


def timed(cmd):
    """Runs cmd; (wall seconds, peak MiB) of the whole process."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd)
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        sys.exit(f"compare.py: {' '.join(cmd)} failed ({status})")
    return seconds, usage.ru_maxrss / 1024


def variant(name, data_lines, training_lines):
    """The config with lines added to its [data] and [training] tables, beside it (relative paths hold)."""
    t = text
    for table, lines in (("data", data_lines), ("training", training_lines)):
        for line in lines:
            key = line.split("=")[0].strip()
            t = re.sub(rf"(?m)^{key}\s*=.*\n", "", t) if re.search(rf"(?ms)^\[{table}\].*?^{key}\s*=", t) else t
        t = re.sub(rf"(?m)^\[{table}\]\s*$", f"[{table}]\n" + "\n".join(lines), t, count=1)
    path = os.path.join(config_dir, f".peer-{name}.toml")
    open(path, "w").write(t)
    return path


cache = os.path.join(out, "cache")
subprocess.run(["rm", "-rf", cache], check=True)
made = []
try:
    cold = variant("extract", data_lines + [f'feature_cache = "{cache}"'], [])
    made.append(cold)
    furcate_extract = timed([a.furcate, "--quiet", "extract", cold, "--out", os.path.join(out, "features.safetensors")])
    runs, fits, peaks = [], [], [furcate_extract[1]]
    for frac in a.test:
        for seed in a.seeds:
            name = f"test{frac}_seed{seed}"
            path = variant(name, data_lines + [f'feature_cache = "{cache}"'], [f"test_fraction = {frac}", f"seed = {seed}"])
            made.append(path)
            run_dir = os.path.join(out, name)
            seconds, peak = timed([a.furcate, "--quiet", "train", path, "--out", run_dir, "--force", "--no-report"])
            fits.append(seconds)
            peaks.append(peak)
            metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
            state = json.load(open(os.path.join(run_dir, "checkpoint", "state.json")))
            scores = {}
            for name_, _, kind, _, _ in heads:
                m = metrics["heads"][name_]
                scores[name_] = {"error_rate": m["error_rate"]} if kind == "class" else {"mae": m["metrics"]["mae"]}
            runs.append({"name": name, "test": state["split"]["test"], "scores": scores})
finally:
    for p in made:
        os.remove(p)

split_file = os.path.join(out, "splits.json")
json.dump([{"name": r["name"], "test": r["test"]} for r in runs], open(split_file, "w"))
peer_out = os.path.join(out, "peer_raw.json")
cmd = [sys.executable, os.path.join(here, "peer.py"), manifest, "--split", split_file, "--out", peer_out]
for name, column, kind, taps, size in heads:
    cmd += ["--head", f"{column}:{kind}:{','.join(taps)}:{size}"]
peer_wall, peer_peak = timed(cmd)
peer = json.load(open(peer_out))

n_splits = len(runs)
fur_fit = sum(fits) / n_splits
rows = [
    ("extract (s): peer in-process incl. model load; furcate whole process, cold cache",
     f"{peer['extract_seconds']:.1f}", f"{furcate_extract[0]:.1f}", f"{peer['extract_seconds'] / furcate_extract[0]:.1f}x"),
    ("fit every head, per split (s): peer in-process; furcate whole `train` process",
     f"{peer['fit_seconds'] / n_splits:.1f}", f"{fur_fit:.1f}", f"{peer['fit_seconds'] / n_splits / fur_fit:.1f}x"),
    ("peak memory (MiB)", f"{peer_peak:.0f}", f"{max(peaks):.0f}", f"{peer_peak / max(peaks):.2f}x"),
]
for r, p in zip(runs, peer["splits"]):
    for name, column, kind, _, _ in heads:
        key = "error_rate" if kind == "class" else "mae"
        ours, theirs = r["scores"][name][key], p["scores"][column][key]
        fmt = (lambda v: f"{100 * v:.2f} %") if kind == "class" else (lambda v: f"{v:.3g}")
        ratio = "=" if ours == theirs else (f"{theirs / ours:.3f}x better" if ours and ours < theirs else
                                           ("better" if ours < theirs else f"{ours / theirs:.3f}x worse" if theirs else "worse"))
        rows.append((f"{r['name']}: {name} {'error' if kind == 'class' else 'MAE'}", fmt(theirs), fmt(ours), ratio))
table = ["| same images, same splits | Python peer | furcate | furcate vs peer |", "| --- | --- | --- | --- |"]
table += [f"| {a_} | {b} | {c} | {d} |" for a_, b, c, d in rows]
md = "\n".join(table)
print(md)
open(os.path.join(out, "peer.md"), "w").write(md + "\n")
json.dump({"furcate": {"extract": furcate_extract, "fit_seconds": fits, "peaks_mib": peaks, "runs": runs},
           "peer": peer, "peer_process": {"seconds": peer_wall, "peak_mib": peer_peak}},
          open(os.path.join(out, "peer.json"), "w"), indent=1)
