"""The torchvision baseline of `cargo bench --bench extract`: eager ResNet50
(random weights), channels-last, inference mode, f32 on the CPU.

Usage: $FURCATE_PYTHON benches/torchvision_resnet50.py [SIZE] [BATCH] [SECONDS]
Prints images/s (median of the timed passes) and the thread count.
"""
import statistics
import sys
import time

import torch
import torchvision

size = int(sys.argv[1]) if len(sys.argv) > 1 else 128
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 32
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0

model = torchvision.models.resnet50(weights=None).eval().to(memory_format=torch.channels_last)
x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
times = []
with torch.inference_mode():
    model(x)  # warm-up
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t)
print(
    f"torchvision {torchvision.__version__} resnet50 {size}x{size} batch {batch}: "
    f"{batch / statistics.median(times):.1f} images/s "
    f"({len(times)} passes, {torch.get_num_threads()} threads)"
)
