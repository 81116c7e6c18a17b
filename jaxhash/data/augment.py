"""Image preprocessing inside the jitted step: uint8 in, normalised float32 out.

Training: optional zero padding, a random crop per image and random horizontal flips.
Evaluation: a centre crop. Everything has static shapes, so it fuses with the model's first layer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _random_crop_and_flip(image, key, crop: int, flip: bool):
  key_y, key_x, key_f = jax.random.split(key, 3)
  h, w, c = image.shape
  y = jax.random.randint(key_y, (), 0, h - crop + 1)
  x = jax.random.randint(key_x, (), 0, w - crop + 1)
  image = jax.lax.dynamic_slice(image, (y, x, 0), (crop, crop, c))
  if flip:
    image = jnp.where(jax.random.bernoulli(key_f), image[:, ::-1], image)
  return image


def _centre_crop(images, crop: int):
  h, w = images.shape[1:3]
  top, left = (h - crop) // 2, (w - crop) // 2
  return images[:, top : top + crop, left : left + crop]


def preprocess(images, key, data_config, train: bool):
  """uint8 (N, H, W, C) -> float32 (N, crop, crop, C), minus ``data.mean``, over ``data.std``."""
  x = images.astype(jnp.float32) / 255.0
  crop, pad, flip = data_config.crop, data_config.pad, data_config.flip
  if train and (crop or flip):
    if pad:
      x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    size = crop or x.shape[1]
    keys = jax.random.split(key, x.shape[0])
    x = jax.vmap(_random_crop_and_flip, in_axes=(0, 0, None, None))(x, keys, size, flip)
  elif crop:
    x = _centre_crop(x, crop)
  mean = jnp.asarray(data_config.mean, jnp.float32)
  std = jnp.asarray(data_config.std, jnp.float32)
  return (x - mean) / std
