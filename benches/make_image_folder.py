"""Writes a synthetic image folder in the ImageNet layout, ROOT/{train,val}/<class>/<n>.jpg, for smoke runs
of `fbnet search` and `fbnet train` where no real data can be reached (the GPU machine): each class is a
colour and a stripe frequency under noise, so a network can learn something, and the sizes vary as real
photos do. Needs Pillow.

    python3 benches/make_image_folder.py ROOT [--classes 1000] [--train 2] [--val 1] [--size 96]
"""

import argparse
import os
import random

from PIL import Image


def main():
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--train", type=int, default=2)
    p.add_argument("--val", type=int, default=1)
    p.add_argument("--size", type=int, default=96)
    a = p.parse_args()
    rng = random.Random(0)
    for split, count in (("train", a.train), ("val", a.val)):
        for c in range(a.classes):
            d = os.path.join(a.root, split, f"n{c:05d}")
            os.makedirs(d, exist_ok=True)
            crng = random.Random(c)
            colour = [crng.randrange(256) for _ in range(3)]
            freq = 1 + c % 7
            for i in range(count):
                w = a.size + rng.randrange(a.size // 2)
                h = a.size + rng.randrange(a.size // 2)
                base = Image.new("RGB", (w, h), tuple(colour))
                stripes = Image.linear_gradient("L").resize((w, h)).point(
                    lambda v: 255 if (v * freq // 32) % 2 else 0).convert("RGB")
                noise = Image.effect_noise((w, h), 60).convert("RGB")
                img = Image.blend(Image.blend(base, stripes, 0.25), noise, 0.3)
                img.save(os.path.join(d, f"{i}.jpg"), quality=85)


if __name__ == "__main__":
    main()
