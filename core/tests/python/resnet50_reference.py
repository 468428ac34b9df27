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
                       ImageNet-normalised images.
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
with torch.inference_mode():
    features = model((images - mean) / std)
save_file({"images": images.contiguous(), "features": features.contiguous()}, f"{out}/io.safetensors")
