#!/usr/bin/env bash
# Images/s of sharded extraction on the local Slurm (scripts/slurm-local.sh)
# against one process, and the cost of the merge: docs/src/many-machines.md.
# Hold both `heavy` slots while it runs: nothing else may use the cores.
# Usage: scripts/slurm-bench.sh [IMAGES (default 784)] [FURCATE (default target/debug/furcate)]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n_per_class=$(( (${1:-784} + 13) / 14 ))
furcate="$(realpath "${2:-$root/target/debug/furcate}")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
printf 'size = 128\nimages_per_class = %d\nvolume_fractions = [0.1, 0.4]\n' "$n_per_class" >synth.toml
"$furcate" -q generate --out data --config synth.toml
config() { # a config whose feature cache is features-$1
    printf '[data]\nmanifest = "data/manifest.csv"\nfeature_cache = "features-%s"\n\n[extractor]\ntype = "efficientnet_lite0"\nweights = "cache:efficientnet_lite0.safetensors"\nsize = 128\n' "$1" >"$1.toml"
}
images=$(( $(wc -l <data/manifest.csv) - 1 ))
cores=$(nproc)
clock() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
report() { printf '%-58s %7.2f s  %7.1f images/s\n' "$1" "$2" "$(echo "$images / $2" | bc -l)"; }
echo "$images images of 128 px, EfficientNet-Lite0, $cores cores"
config one
report "one process, $cores threads" "$(clock "$furcate" -q --threads "$cores" extract one.toml --out one.safetensors)"
for shards in 1 2; do
    config "s$shards"
    cpus=$(( cores / shards ))
    # From submission to the finishing job's last log line (sbatch --wait polls
    # with growing pauses, so its own return comes later).
    t0=$(date +%s.%N)
    "$furcate" slurm "s$shards.toml" --shards "$shards" --cpus "$cpus" --dir "jobs-$shards" --submit --wait >/dev/null
    t1=$(stat -c %.9Y "jobs-$shards"/logs/*finish*.out)
    report "$shards shard(s) x $cpus CPUs, array + finishing job" "$(echo "$t1 - $t0" | bc)"
done
report "merge: extract from a warm cache (the finishing job)" "$(clock "$furcate" -q extract s2.toml --out again.safetensors)"
report "merge: cache merge (2 segments into 1)" "$(clock "$furcate" -q cache merge features-s2)"
