"""Reference features of torchvision's ResNet50 for the parity test.

Usage: resnet50_reference.py OUT_DIR SIZE BATCH SEED

Writes to OUT_DIR:
  weights.safetensors  the full state_dict of a randomly initialised
                       torchvision resnet50 (fc.* and num_batches_tracked
                       included), BatchNorm statistics and affine parameters
                       randomised too so that eval-mode BatchNorm matters;
  io.safetensors       `images` [BATCH, 3, SIZE, SIZE] in [0, 1] and
                       `features` [BATCH, 2048]: the globally average-pooled
                       output of torchvision's resnet50 in eval mode on the
                       ImageNet-normalised images; and per tap (stem: the
                       stem's ReLU, before the max-pool; layer1 .. layer4)
                       `tap_NAME_mean` and `tap_NAME_std` [BATCH, C], its
                       per-channel spatial mean and (population) standard
                       deviation, taken with forward hooks.
"""
import sys

import torch
import torchvision
from safetensors.torch import save_file

out, size, batch, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(seed)
model = torchvision.models.resnet50(weights=None)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.1)
model.eval()
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/weights.safetensors")

images = torch.rand(batch, 3, size, size)
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
model.fc = torch.nn.Identity()
taps = {}
for name, module in [("stem", model.relu), ("layer1", model.layer1), ("layer2", model.layer2),
                     ("layer3", model.layer3), ("layer4", model.layer4)]:
    module.register_forward_hook(lambda m, i, o, name=name: taps.__setitem__(name, o.clone()))
with torch.inference_mode():
    features = model((images - mean) / std)
tensors = {"images": images.contiguous(), "features": features.contiguous()}
for name, a in taps.items():
    tensors[f"tap_{name}_mean"] = a.mean((2, 3)).contiguous()
    tensors[f"tap_{name}_std"] = a.std((2, 3), correction=0).contiguous()
save_file(tensors, f"{out}/io.safetensors")
