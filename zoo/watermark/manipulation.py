"""Face replacement, simulated: the deepfake manipulation that FaceGuard's watermark must not survive.

lfw's crops are aligned, so the face sits in a fixed central ellipse (60 % of the width, 80 % of the height); a face
swap pastes another person's face there and blends the seam. The watermarking task trains against it (the bits must
not be readable once the face is replaced, `loss.fragile`) and the evaluation measures it with held-out faces.
"""
import numpy as np


def face_mask(size: int, feather: float = 0.08) -> np.ndarray:
  """float32 [size, size, 1]: 1 inside the face ellipse, fading to 0 over `feather` of the side."""
  y, x = np.mgrid[:size, :size] / (size - 1) - 0.5
  r = np.sqrt((x / 0.3) ** 2 + (y / 0.4) ** 2)
  return np.clip((1.0 - r) / (feather / 0.3) + 0.5, 0.0, 1.0)[..., None].astype(np.float32)


def replace_face(target, source):
  """`target` with its face region replaced by `source`'s: float images [..., S, S, C] (numpy or jax) of one size."""
  m = face_mask(target.shape[-2])
  return m * source + (1.0 - m) * target
