"""zoo/data/randaugment.py: every op against the TensorFlow reference (tools/tf_augment.py) on photographs, the
pixel-centre convention of the geometric ops, and the policy's draws (op, magnitude, sign) and validation."""
import math
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from skimage import data as skdata  # noqa: E402

from zoo.data import randaugment as ra  # noqa: E402

PIXEL_OPS = ('Identity', 'AutoContrast', 'Equalize', 'Solarize', 'Posterize', 'Color', 'Contrast', 'Brightness',
             'Sharpness')
GEOMETRIC_OPS = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')
# Both signs, inside the documented range, at its end (10), past it (15, ResNet-RS) and at MAX_MAGNITUDE; 7.3 and
# -12.345 give shifts and angles that fall between pixels.
MAGNITUDES = (-30.0, -12.345, -10.0, -3.0, 3.0, 7.3, 9.0, 15.0, 30.0)


@pytest.fixture(scope='module')
def tf_augment():
  """The TensorFlow reference; TensorFlow is becoming optional, so the parity tests skip without it."""
  pytest.importorskip('tensorflow')
  from tools import tf_augment
  return tf_augment


@pytest.fixture(scope='module')
def photos():
  """Real photographs, as the ops meet them in training: square, odd-sized and non-square colour crops, and grey."""
  return {
      'astronaut': cv2.resize(skdata.astronaut(), (224, 224), interpolation=cv2.INTER_AREA),
      'chelsea': np.ascontiguousarray(skdata.chelsea()[30:253, 80:381]),  # 223 x 301: odd sides, centre off-pixel
      'coffee': cv2.resize(skdata.coffee(), (300, 200), interpolation=cv2.INTER_AREA),
      'camera': np.ascontiguousarray(skdata.camera()[128:352, 144:368, None]),  # grey, [224, 224, 1]
  }


def reference(tf_augment, image, name, magnitude):
  return tf_augment.apply_op(image, name, magnitude).numpy()


def psnr(a, b):
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def tiny_image(h=6, w=7, c=3, seed=0):
  return np.random.default_rng(seed).integers(30, 220, (h, w, c), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------------------------------
# Parity with the TensorFlow reference


def test_op_names_and_constants_are_the_references(tf_augment):
  assert ra.RAND_AUGMENT_OPS == tf_augment.RAND_AUGMENT_OPS
  assert set(PIXEL_OPS) | set(GEOMETRIC_OPS) == set(ra.RAND_AUGMENT_OPS)
  for constant in ('LEVEL_DENOM', 'MAX_MAGNITUDE', 'FILL_VALUE', 'TRANSLATE_PCT'):
    assert getattr(ra, constant) == getattr(tf_augment, constant), constant


@pytest.mark.parametrize('name', PIXEL_OPS)
def test_pixel_op_equals_the_reference_exactly(tf_augment, photos, name):
  # Thresholds, factors and blends are the reference's float32 operations in its order, and look-up tables hold the
  # same per-value results: every pixel agrees, at every magnitude, on colour and grey photographs.
  for image_name, image in photos.items():
    for magnitude in MAGNITUDES:
      np.testing.assert_array_equal(ra.apply_op(image, name, magnitude),
                                    reference(tf_augment, image, name, magnitude),
                                    err_msg=f'{name} at {magnitude} on {image_name}')


def test_grey_level_equals_the_references_for_every_colour(tf_augment):
  # Color and Contrast rest on the rounded luma. Exact agreement on four photographs could be luck near the .5 ties;
  # here it is checked for all 2**24 RGB colours (float32 products summed in the reference's order).
  import tensorflow as tf
  levels = np.arange(256, dtype=np.uint8)
  for reds in np.array_split(levels, 8):
    rgb = np.stack(np.meshgrid(reds, levels, levels, indexing='ij'), axis=-1).reshape(-1, 4096, 3)
    ours = ra._grey(rgb)
    theirs = tf_augment._grey(tf.cast(rgb, tf.float32)).numpy()[..., 0]
    assert np.array_equal(ours, theirs), f'first differing red level among {reds[0]}..{reds[-1]}'


@pytest.mark.parametrize('name', GEOMETRIC_OPS)
def test_geometric_op_matches_the_reference_within_one_level(tf_augment, photos, name):
  # Both sample at the same positions (next tests) and round half to even; they differ, by 1, only where the
  # interpolated value lies within float rounding of a half, because they compute the source position in different
  # float arithmetic (a shear of 0.3 at row 5 lands on x + 1.5 in one, a hair off it in the other). Measured over
  # these photographs and magnitudes: max |diff| 1 everywhere; mean |diff| <= 0.0069 and PSNR >= 69.7 dB, except
  # for shifts of (nearly) half a pixel, where every pixel between two neighbours an odd step apart is such a near
  # tie: TranslateX on coffee (width 300) at 9 (121.49999 px: mean 0.120, 57.3 dB; see the test below) and at 15
  # (202.5 px: 0.036, 62.6 dB).
  for image_name, image in photos.items():
    for magnitude in MAGNITUDES:
      ours = ra.apply_op(image, name, magnitude)
      theirs = reference(tf_augment, image, name, magnitude)
      diff = np.abs(ours.astype(np.int16) - theirs)
      where = f'{name} at {magnitude} on {image_name}'
      assert diff.max() <= 1, where
      assert diff.mean() <= 0.15, where
      assert psnr(ours, theirs) >= 55.0, where


def test_integer_shifts_and_quarter_turns_equal_the_reference_exactly(tf_augment, photos):
  # Where the source coordinates are whole pixels, interpolation rounding cannot differ: any disagreement here would
  # be a convention error (pixel centres, rotation centre, fill), not rounding.
  image = photos['chelsea'][:, :220]  # width 220: 0.45 * 220 = 99 pixels at magnitude 10
  image = np.ascontiguousarray(image[:220])  # 220 x 220: the quarter turn maps the square onto itself
  for name, magnitude in [('TranslateX', 10.0), ('TranslateX', -10.0), ('TranslateY', 10.0), ('TranslateY', -20.0),
                          ('Rotate', 30.0), ('Rotate', -30.0)]:
    np.testing.assert_array_equal(ra.apply_op(image, name, magnitude), reference(tf_augment, image, name, magnitude),
                                  err_msg=f'{name} at {magnitude}')
  odd = photos['chelsea']  # 223 x 301: rotation about a pixel centre; the uncovered corners are grey
  out = ra.apply_op(odd, 'Rotate', 10.0)
  np.testing.assert_array_equal(out[111, 150], odd[111, 150])
  np.testing.assert_array_equal(out[0, 0], ra.FILL_VALUE)


def test_reference_matrix_needs_no_half_pixel_shift(tf_augment, photos):
  # TensorFlow's ImageProjectiveTransformV3 and cv2.warpAffine (WARP_INVERSE_MAP) both evaluate the output -> input
  # map at integer pixel indices (pixel centres), unlike tf.image.resize's half-pixel-centre convention. Measured:
  # shifting the matrix by a quarter or half pixel drops the PSNR from ~90 dB to ~32 / ~27 dB.
  image = photos['astronaut']
  magnitude = 7.3
  theirs = reference(tf_augment, image, 'Rotate', magnitude)
  theta = magnitude / ra.LEVEL_DENOM * math.radians(30.0)
  c = (image.shape[0] - 1) / 2.0
  cos, sin = math.cos(theta), math.sin(theta)
  matrix = np.array([[cos, -sin, c - cos * c + sin * c], [sin, cos, c - sin * c - cos * c]])
  scores = {}
  for shift in (-0.5, -0.25, 0.0, 0.25, 0.5):
    scores[shift] = psnr(ra._warp(image, matrix + [[0, 0, shift], [0, 0, shift]]), theirs)
  assert scores[0.0] >= 80.0, scores
  assert max(v for k, v in scores.items() if k != 0.0) <= 35.0, scores


def test_half_pixel_shifts_round_ties_to_even_as_the_reference(tf_augment, photos):
  # Both round an interpolated value that is exactly a half to even (OpenCV 5's uint8 warp as the reference's
  # tf.round): at width 110, TranslateX at 10 shifts by exactly 49.5 pixels (in float32 too), so every output pixel is
  # the mean of two neighbours and about half of them are ties; all agree.
  image = np.ascontiguousarray(photos['astronaut'][:, :110])
  ours = ra.apply_op(image, 'TranslateX', 10.0)
  np.testing.assert_array_equal(ours, reference(tf_augment, image, 'TranslateX', 10.0))
  pair_sum = image[:, 49:109].astype(np.int16) + image[:, 50:110]  # the neighbours of x + 49.5
  assert np.mean(pair_sum % 2) > 0.4  # ties
  np.testing.assert_array_equal(ours[:, :60], np.rint(pair_sum / 2.0))  # numpy's rint: half to even


def test_near_half_shifts_differ_only_where_float32_makes_them_exact_halves(tf_augment, photos):
  # What the bounds above allow for. At width 300, TranslateX at 9 shifts by 121.49999 (float32). The reference adds
  # it to the column in float32, which rounds the source position to exactly x + 121.5 from column 7 on; OpenCV keeps
  # it a hair short of it, weighting the left neighbour a little more. Where the two neighbours differ by an odd step,
  # the reference rounds the tie to even and OpenCV towards the left neighbour: |diff| 1 on ~21% of those columns'
  # values, none in the first 7.
  image = photos['coffee']
  ours = ra.apply_op(image, 'TranslateX', 9.0).astype(np.int16)
  theirs = reference(tf_augment, image, 'TranslateX', 9.0).astype(np.int16)
  shift = np.float32(0.9) * np.float32(ra.TRANSLATE_PCT) * np.float32(300)
  source = np.arange(300, dtype=np.float32) + shift
  exact_half = source - np.floor(source) == 0.5
  assert not exact_half[:7].any() and exact_half[7:].all()
  diff = np.abs(ours - theirs)
  np.testing.assert_array_equal(diff[:, :7], 0)
  assert diff.max() == 1 and 0.1 <= diff[:, 7:178].mean() <= 0.3  # from column 178 on, the source reaches the fill


def test_a_whole_policy_matches_the_reference_applied_to_the_same_draws(tf_augment, photos):
  # The same drawn (op, magnitude) sequence through both implementations. A one-level geometric difference can be
  # amplified by a later op (a pixel crossing a Solarize or Posterize threshold, or moving a histogram bin for
  # Equalize), so the bound is on the share of differing values, and on PSNR. Measured over these 40 seeds: 34
  # exact; at most 0.0093% of the values differ (14 of 150528); min PSNR 52.6 dB (seed 12, Rotate then Solarize at
  # threshold 11: a value off by 1 there becomes a value off by ~230), all others >= 88 dB.
  image = photos['astronaut']
  exact = 0
  for seed in range(40):
    layers = ra.draw_layers(np.random.default_rng(seed), 2, 9.0, 0.5, len(ra.RAND_AUGMENT_OPS))
    theirs = image
    for index, magnitude in layers:
      theirs = reference(tf_augment, theirs, ra.RAND_AUGMENT_OPS[index], magnitude)
    ours = ra.rand_augment(image, np.random.default_rng(seed), 2, 9.0, 0.5)
    assert np.mean(ours != theirs) <= 0.001 and psnr(ours, theirs) >= 50.0, (seed, layers)
    exact += np.array_equal(ours, theirs)
  assert exact >= 30


# ----------------------------------------------------------------------------------------------------------------------
# Each op on its own (no TensorFlow)


@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('name', ra.RAND_AUGMENT_OPS)
def test_every_op_keeps_shape_dtype_and_gives_a_contiguous_array(name, channels):
  image = tiny_image(20, 24, channels)[:, ::2]  # a strided view: the output must still be C-contiguous
  out = ra.apply_op(image, name, 7.0)
  assert out.shape == image.shape and out.dtype == np.uint8 and out.flags.c_contiguous


@pytest.mark.parametrize('name', [n for n in ra.RAND_AUGMENT_OPS if n not in ('AutoContrast', 'Equalize')])
def test_magnitude_zero_is_the_identity(name, photos):
  image = photos['astronaut']
  np.testing.assert_array_equal(ra.apply_op(image, name, 0.0), image)
  np.testing.assert_array_equal(ra.apply_op(image, name, -0.0), image)


@pytest.mark.parametrize('name', ra.RAND_AUGMENT_OPS)
def test_signed_ops_depend_on_the_sign_and_the_others_do_not(name, photos):
  image = photos['astronaut']
  plus, minus = ra.apply_op(image, name, 6.0), ra.apply_op(image, name, -6.0)
  signed = name in GEOMETRIC_OPS + ('Color', 'Contrast', 'Brightness', 'Sharpness')
  assert np.array_equal(plus, minus) != signed


def test_sharpness_leaves_the_border_and_tiny_images_alone():
  image = tiny_image(5, 6)
  out = ra.apply_op(image, 'Sharpness', 10.0)
  for edge in (np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1]):
    np.testing.assert_array_equal(out[edge], image[edge])
  assert not np.array_equal(out[1:-1, 1:-1], image[1:-1, 1:-1])
  for shape in ((2, 2, 3), (1, 9, 1), (9, 2, 3)):  # no interior pixel (the reference cannot run these)
    small = tiny_image(*shape)
    np.testing.assert_array_equal(ra.apply_op(small, 'Sharpness', 10.0), small)


def test_equalize_and_auto_contrast_leave_a_flat_channel_alone():
  image = tiny_image(32, 32)  # at least 255 pixels: PIL's equalize leaves smaller images as they are
  image[..., 1] = 77
  for name in ('Equalize', 'AutoContrast'):
    out = ra.apply_op(image, name, 0.0)
    np.testing.assert_array_equal(out[..., 1], 77)
    assert out[..., 0].min() <= 10 and out[..., 0].max() >= 245, name


def test_apply_op_rejects_bad_images_and_names():
  image = tiny_image()
  with pytest.raises(ValueError, match='uint8'):
    ra.apply_op(image.astype(np.float32), 'Rotate', 5.0)
  with pytest.raises(ValueError, match=r'\[H, W, 1 or 3\]'):
    ra.apply_op(image[..., 0], 'Rotate', 5.0)
  with pytest.raises(ValueError, match=r'\[H, W, 1 or 3\]'):
    ra.apply_op(np.zeros((4, 4, 4), np.uint8), 'Rotate', 5.0)
  with pytest.raises(ValueError, match='numpy'):
    ra.apply_op(image.tolist(), 'Rotate', 5.0)
  with pytest.raises(ValueError, match="unknown RandAugment op.*'Invert'.*valid: Identity, AutoContrast"):
    ra.apply_op(image, 'Invert', 5.0)


def test_check_ops_expands_and_validates_names():
  assert ra.check_ops(None) == ra.RAND_AUGMENT_OPS
  assert ra.check_ops(()) == ra.RAND_AUGMENT_OPS
  assert ra.check_ops('Rotate') == ('Rotate',)
  assert ra.check_ops(['Solarize', 'Identity']) == ('Solarize', 'Identity')
  with pytest.raises(ValueError, match=r"\['Invert', 'rotate'\]; valid: Identity, AutoContrast, .*TranslateY$"):
    ra.check_ops(('Rotate', 'Invert', 'rotate'))


# ----------------------------------------------------------------------------------------------------------------------
# The policy: draws and determinism


N_OPS = len(ra.RAND_AUGMENT_OPS)


def draws_over_seeds(seeds=2800, num_layers=2, magnitude=9.0, magnitude_std=0.0):
  """(op index, signed magnitude) of every layer, one generator per seed as grain's random_map makes them."""
  return np.array([d for s in range(seeds)
                   for d in ra.draw_layers(np.random.default_rng(s), num_layers, magnitude, magnitude_std, N_OPS)])


def test_op_choice_is_uniform_and_the_sign_a_coin():
  draws = draws_over_seeds()  # 5600 layers
  counts = np.bincount(draws[:, 0].astype(int), minlength=N_OPS)
  assert counts.sum() == 5600 and len(counts) == N_OPS
  # 400 expected per op, binomial std 19.3: a band of +-4.5 std (measured: 378..422).
  assert counts.min() >= 313 and counts.max() <= 487, counts
  negative = np.mean(draws[:, 1] < 0)
  assert abs(negative - 0.5) <= 0.03, negative  # std 0.0067 (measured 0.4973)
  np.testing.assert_array_equal(np.abs(draws[:, 1]), 9.0)  # magnitude_std 0: the magnitude itself


def test_magnitude_std_draws_a_clipped_normal_per_layer():
  magnitudes = np.abs(draws_over_seeds(2000, 5, 9.0, 3.0)[:, 1])  # 10000 layers
  # Mean and std within bands of 4.3 and 4.7 standard errors (measured 9.043, 3.019); 68.3% within one std
  # (measured 67.7%).
  assert abs(magnitudes.mean() - 9.0) <= 0.13 and abs(magnitudes.std() - 3.0) <= 0.1
  assert abs(np.mean(np.abs(magnitudes - 9.0) < 3.0) - 0.6827) <= 0.02
  # Near the ends the clipping piles draws onto 0 and MAX_MAGNITUDE: P(N(28, 5) > 30) = P(Z > 0.4) = 0.345.
  high = np.abs(draws_over_seeds(1000, 5, 28.0, 5.0)[:, 1])
  assert high.max() == ra.MAX_MAGNITUDE and abs(np.mean(high == ra.MAX_MAGNITUDE) - 0.345) <= 0.03
  low = np.abs(draws_over_seeds(1000, 5, 1.0, 3.0)[:, 1])  # P(N(1, 3) < 0) = P(Z < -1/3) = 0.369
  assert low.min() == 0.0 and abs(np.mean(low == 0.0) - 0.369) <= 0.03
  assert 0.0 <= low.min() and high.max() <= ra.MAX_MAGNITUDE


def test_rand_augment_applies_the_drawn_layers_in_order():
  # Ties rand_augment to draw_layers, whose distribution the tests above check.
  image = tiny_image(16, 16)
  for seed in range(30):
    expected = image
    for index, magnitude in ra.draw_layers(np.random.default_rng(seed), 3, 12.0, 2.0, N_OPS):
      expected = ra.apply_op(expected, ra.RAND_AUGMENT_OPS[index], magnitude)
    np.testing.assert_array_equal(ra.rand_augment(image, np.random.default_rng(seed), 3, 12.0, 2.0), expected)


@pytest.mark.parametrize('channels', [1, 3])
def test_rand_augment_is_a_function_of_the_seed(photos, channels):
  image = photos['camera' if channels == 1 else 'astronaut'][:64, :64]
  a = ra.rand_augment(image, np.random.default_rng(3), 2, 9.0, 0.5)
  assert a.shape == image.shape and a.dtype == np.uint8
  np.testing.assert_array_equal(a, ra.rand_augment(image, np.random.default_rng(3), 2, 9.0, 0.5))
  outputs = {ra.rand_augment(image, np.random.default_rng(s), 2, 9.0, 0.5).tobytes() for s in range(16)}
  assert len(outputs) >= 14  # measured 16 of 16; a coincidence needs e.g. Identity twice (1/196)


def test_rand_augment_draws_the_same_count_of_numbers_whatever_the_settings():
  # Whatever is drawn from the generator after RandAugment (e.g. random erasing) does not move with its settings.
  image = tiny_image()
  follow = []
  for magnitude_std, ops in ((0.0, None), (2.0, None), (0.0, ('Rotate',)), (1.0, ('Identity', 'Solarize'))):
    rng = np.random.default_rng(11)
    ra.rand_augment(image, rng, 2, 9.0, magnitude_std, ops)
    follow.append(rng.random())
  assert len(set(follow)) == 1


def test_rand_augment_zero_layers_and_restricted_ops(photos):
  image = np.ascontiguousarray(photos['astronaut'][:48, :48])
  assert ra.rand_augment(image, np.random.default_rng(0), 0) is image  # no copy
  rotations = {ra.apply_op(image, 'Rotate', m).tobytes() for m in (9.0, -9.0)}
  seen = {ra.rand_augment(image, np.random.default_rng(s), 1, 9.0, ops=('Rotate',)).tobytes() for s in range(20)}
  assert seen == rotations  # only Rotate, with both signs
  for s in range(6):
    np.testing.assert_array_equal(ra.rand_augment(image, np.random.default_rng(s), 3, 10.0, ops=('Identity',)), image)
  chosen = {ra.rand_augment(image, np.random.default_rng(s), 1, 10.0, ops=['Identity', 'Solarize']).tobytes()
            for s in range(20)}
  assert chosen == {image.tobytes(), (255 - image).tobytes()}


def test_rand_augment_rejects_bad_arguments():
  image = tiny_image()
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match='valid: Identity, AutoContrast'):
    ra.rand_augment(image, rng, ops=('Rotate', 'Invert'))
  with pytest.raises(ValueError, match='uint8'):
    ra.rand_augment(image.astype(np.float32), rng)
  with pytest.raises(ValueError, match='Generator'):
    ra.rand_augment(image, np.random.RandomState(0))
  with pytest.raises(ValueError, match='Generator'):
    ra.rand_augment(image, 0)
  for kwargs in ({'magnitude': 31.0}, {'magnitude': -1.0}, {'magnitude': math.nan}, {'num_layers': -1},
                 {'num_layers': 1.5}, {'magnitude_std': -0.5}):
    with pytest.raises(ValueError, match='num_layers >= 0, 0 <= magnitude <= 30'):
      ra.rand_augment(image, rng, **kwargs)
