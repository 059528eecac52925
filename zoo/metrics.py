"""The zoo's shared metrics, one definition each: image quality (PSNR, SSIM, NMSE) of the denoising, reconstruction,
watermarking and autoencoding tasks and of the plug-and-play solvers, and the bitwise accuracy of a watermark.

Each works per image (or per message) on jax or numpy arrays and returns a jax array; the callers average."""
import jax
import jax.numpy as jnp


def psnr(x, reference, peak: float = 1.0, axes=(-3, -2, -1)):
  """Peak signal-to-noise ratio in dB, 10 log10(peak^2 / MSE), per image over `axes`.

  Peak PSNR, not the SNR 20 log10(||x_ref|| / ||x - x_ref||) that the plug-and-play paper's code calls "psnr".
  """
  mse = jnp.mean(jnp.square(jnp.asarray(x, jnp.float32) - jnp.asarray(reference, jnp.float32)), axis=axes)
  return 10.0 * jnp.log10(peak ** 2 / mse)


def ssim(x, reference, data_range: float = 1.0):
  """Structural similarity (Wang et al. 2004) per image [..., H, W, C], the mean over windows and channels.

  scikit-image's default flavour, so numbers compare with `skimage.metrics.structural_similarity(x, ref,
  data_range=..., channel_axis=-1)`: a 7x7 uniform window, K1 = 0.01, K2 = 0.03, sample (co)variances (times 49/48).
  Only windows that fit inside the image count, which is skimage's mean too: it drops the 3-pixel border whose
  windows its reflected padding filled.
  """
  x = jnp.asarray(x, jnp.float32)
  reference = jnp.asarray(reference, jnp.float32)
  window = (1,) * (x.ndim - 3) + (7, 7, 1)

  def local_mean(z):
    return jax.lax.reduce_window(z, 0.0, jax.lax.add, window, (1,) * z.ndim, 'VALID') / 49.0

  mx, my = local_mean(x), local_mean(reference)
  cov_norm = 49.0 / 48.0
  vx = cov_norm * (local_mean(x * x) - mx * mx)
  vy = cov_norm * (local_mean(reference * reference) - my * my)
  vxy = cov_norm * (local_mean(x * reference) - mx * my)
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  s = (2 * mx * my + c1) * (2 * vxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
  return jnp.mean(s, axis=(-3, -2, -1))


def nmse(x, reference, axes=(-3, -2, -1)):
  """Normalised squared error |x - ref|^2 / |ref|^2 per image over `axes` (fastMRI's NMSE)."""
  x = jnp.asarray(x, jnp.float32)
  reference = jnp.asarray(reference, jnp.float32)
  return jnp.sum(jnp.square(x - reference), axis=axes) / jnp.sum(jnp.square(reference), axis=axes)


def read_bits(decoded):
  """The bits a watermark decoder's outputs [..., L] stand for: 1 where the output is above 0.5 (the decoder is trained
  towards the {0, 1} bits), as int32."""
  return (jnp.asarray(decoded) > 0.5).astype(jnp.int32)


def bit_accuracy(decoded, bits):
  """Fraction of the L bits [..., L] read correctly from the decoder's outputs, per message."""
  return jnp.mean((read_bits(decoded) == (jnp.asarray(bits) > 0.5)).astype(jnp.float32), axis=-1)
