"""Image-quality metrics of the inverse-problem experiments and the denoising task."""
import jax.numpy as jnp


def psnr(x, reference, peak: float = 1.0, axes=(-3, -2, -1)):
  """Peak signal-to-noise ratio in dB, 10 log10(peak^2 / MSE), per image over `axes`.

  Peak PSNR, not the SNR 20 log10(||x_ref|| / ||x - x_ref||) that the plug-and-play paper's code calls "psnr".
  """
  mse = jnp.mean(jnp.square(jnp.asarray(x, jnp.float32) - jnp.asarray(reference, jnp.float32)), axis=axes)
  return 10.0 * jnp.log10(peak ** 2 / mse)
