# Renders the micrographs of the guide's "Real micrographs" chapter (run in this folder):
# two-phase Gaussian-field structures, blur, noise, an illumination gradient,
# 12-bit data in 16-bit TIFFs, a data bar on sem_1..5. Needs numpy and Pillow.
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
def field(h, w, sigma):
    n = rng.standard_normal((h, w))
    fy = np.fft.fftfreq(h)[:, None]; fx = np.fft.fftfreq(w)[None, :]
    k = np.exp(-2 * (np.pi * sigma) ** 2 * (fx ** 2 + fy ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(n) * k))
def blur(img, sigma):
    h, w = img.shape
    fy = np.fft.fftfreq(h)[:, None]; fx = np.fft.fftfreq(w)[None, :]
    k = np.exp(-2 * (np.pi * sigma) ** 2 * (fx ** 2 + fy ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(img) * k))
def micrograph(h, w, porosity, sigma, bar=0, name="x.tif", bits=12):
    f = field(h, w, sigma)
    binary = f > np.quantile(f, 1 - porosity)
    true = binary.mean()
    g = np.where(binary, 0.75, 0.25)
    g = blur(g, 1.5)
    yy, xx = np.mgrid[0:h, 0:w]
    g = g * (0.9 + 0.2 * xx / w)             # illumination gradient
    g = g + rng.normal(0, 0.04, g.shape)     # noise
    if bar:
        g = np.vstack([g, np.ones((bar, w)) * 0.95])
        g[h + 10:h + 40, 40:600:3] = 0.05        # "text"
    top = 2 ** bits - 1
    raw = np.clip(np.round(g * top), 0, top).astype(np.uint16)
    Image.fromarray(raw).save(name)
    return true
out = []
out.append(("twelve.tif", micrograph(512, 512, 0.46, 4, name="twelve.tif")))
out.append(("twelve_8bit.png", None))
Image.fromarray((np.asarray(Image.open("twelve.tif"), dtype=np.float64) / 4095 * 255).round().astype(np.uint8)).save("twelve_8bit.png")
for i in range(6):
    out.append((f"sem_{i}.tif", micrograph(1536, 2048, 0.40 if i == 0 else 0.25 + 0.05 * i, 6, bar=64 if i else 0, name=f"sem_{i}.tif")))
with open("truth.csv", "w") as fh:
    fh.write("file,porosity\n")
    for n, t in out:
        if t is not None: fh.write(f"{n},{t:.6f}\n")
print(open("truth.csv").read())
