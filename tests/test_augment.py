"""tools/tf_augment.py, the TensorFlow reference that the zoo's numpy / OpenCV augmentations are tested against:
stateless determinism, crop geometry, each RandAugment op against its definition or PIL."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
tf = pytest.importorskip('tensorflow')

from tools import tf_augment as augment  # noqa: E402

M_MAX = augment.LEVEL_DENOM  # the magnitude at which each op reaches its documented range


def seed(a=0, b=0):
  return tf.constant([a, b], tf.int64)


def random_image(h=32, w=40, c=3, rng=0):
  """Noise that avoids 0 and 255, so stretching and equalising have work to do."""
  r = np.random.RandomState(rng)
  return (r.rand(h, w, c) ** 2 * 180 + 30).astype(np.uint8)


def coordinate_image(h, w):
  """Channel 0 holds the row, channel 1 the column, channel 2 is constant: a crop reveals where it came from."""
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  return np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


def op(image, name, magnitude):
  return augment.apply_op(image, name, magnitude).numpy()


# ----------------------------------------------------------------------------------------------------------------------
# Inception crop


def test_inception_crop_shape_dtype_and_determinism():
  image = random_image(60, 80)
  a = augment.inception_crop(image, seed(1, 2), 24)
  assert a.shape == (24, 24, 3) and a.dtype == tf.float32
  np.testing.assert_array_equal(a, augment.inception_crop(image, seed(1, 2), 24))
  assert not np.array_equal(a, augment.inception_crop(image, seed(1, 3), 24))
  assert 0.0 <= float(tf.reduce_min(a)) and float(tf.reduce_max(a)) <= 255.0


def test_crop_box_area_and_aspect_within_range():
  h, w = 120, 160
  areas = []
  for i in range(60):
    offset, size = (t.numpy() for t in augment.sample_crop_box([h, w, 3], seed(i, 7)))
    assert (offset >= 0).all() and offset[0] + size[0] <= h and offset[1] + size[1] <= w
    area = size[0] * size[1] / (h * w)
    areas.append(area)
    assert 0.08 - 0.01 <= area <= 1.0
    if area < 1.0:  # not the whole-image fallback
      assert 3 / 4 - 0.05 <= size[1] / size[0] <= 4 / 3 + 0.05
  assert min(areas) < 0.3 and max(areas) > 0.6  # the range is actually explored


def test_crop_box_respects_a_narrow_area_range():
  for i in range(20):
    _, size = augment.sample_crop_box([200, 200], seed(i, 1), area_range=(0.25, 0.3))
    assert 0.24 <= np.prod(size.numpy()) / 200 ** 2 <= 0.31


def test_inception_crop_cuts_the_sampled_box():
  image = coordinate_image(200, 240)
  for i in range(5):
    s = seed(i, 11)
    (y, x), (h, w) = (t.numpy() for t in augment.sample_crop_box(image.shape, s))
    out = augment.inception_crop(image, s, 32).numpy()
    # Bilinear resampling of a ramp stays within the box and is centred on it.
    assert y - 1e-3 <= out[..., 0].min() and out[..., 0].max() <= y + h - 1 + 1e-3
    assert x - 1e-3 <= out[..., 1].min() and out[..., 1].max() <= x + w - 1 + 1e-3
    assert abs(out[..., 0].mean() - (y + (h - 1) / 2)) < 0.5
    assert abs(out[..., 1].mean() - (x + (w - 1) / 2)) < 0.5
    np.testing.assert_allclose(out[..., 2], 7.0)


def test_decode_and_inception_crop_png_equals_decoded_path():
  image = random_image(50, 70)
  png = tf.io.encode_png(image)
  for i in range(3):
    got = augment.decode_and_inception_crop(png, seed(i, 5), 20)
    assert got.shape == (20, 20, 3) and got.dtype == tf.float32
    np.testing.assert_array_equal(got, augment.inception_crop(image, seed(i, 5), 20))


def test_decode_and_inception_crop_jpeg_decodes_only_the_box():
  rows, cols = np.meshgrid(np.linspace(0, 255, 96), np.linspace(0, 255, 128), indexing='ij')
  image = np.stack([rows, cols, 255 - rows], axis=-1).astype(np.uint8)  # smooth: JPEG keeps it close
  jpeg = tf.io.encode_jpeg(image, quality=95)
  decoded = tf.io.decode_jpeg(jpeg, channels=3)
  for i in range(3):
    got = augment.decode_and_inception_crop(jpeg, seed(i, 9), 24).numpy()
    want = augment.inception_crop(decoded, seed(i, 9), 24).numpy()
    assert got.shape == (24, 24, 3)
    assert np.abs(got - want).max() <= 3.0  # same box; only JPEG's windowed decoding may differ slightly
  assert not np.array_equal(augment.decode_and_inception_crop(jpeg, seed(0, 9), 24),
                            augment.decode_and_inception_crop(jpeg, seed(1, 9), 24))


@pytest.mark.parametrize('encode', [tf.io.encode_png, tf.io.encode_jpeg])
def test_decode_and_inception_crop_converts_channels(encode):
  grey = random_image(40, 40, 1)
  assert augment.decode_and_inception_crop(encode(grey), seed(), 16, channels=1).shape == (16, 16, 1)
  rgb = augment.decode_and_inception_crop(encode(grey), seed(), 16, channels=3).numpy()
  assert rgb.shape == (16, 16, 3)
  np.testing.assert_allclose(rgb[..., 0], rgb[..., 2], atol=1.0)


# ----------------------------------------------------------------------------------------------------------------------
# Flip, eval crop, normalisation


def test_random_flip_is_a_mirror_or_nothing_and_both_happen():
  image = random_image(8, 10)
  outcomes = set()
  for i in range(16):
    out = augment.random_flip(image, seed(i, 3)).numpy()
    np.testing.assert_array_equal(out, augment.random_flip(image, seed(i, 3)))
    if np.array_equal(out, image):
      outcomes.add('same')
    else:
      np.testing.assert_array_equal(out, image[:, ::-1])
      outcomes.add('mirrored')
  assert outcomes == {'same', 'mirrored'}


def test_resize_and_center_crop_without_resize_is_the_exact_centre():
  image = np.zeros((200, 300, 3), np.uint8)
  image[99:101, 149:151] = 255  # the 2x2 centre
  out = augment.resize_and_center_crop(image, 100, crop_pct=0.5).numpy()  # shorter side 200: no resize
  assert out.shape == (100, 100, 3) and out.dtype == np.float32
  expected = np.zeros((100, 100, 3), np.float32)
  expected[49:51, 49:51] = 255.0
  np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize('shape', [(200, 300), (300, 200), (257, 257)])
def test_resize_and_center_crop_keeps_the_centre_marker_centred(shape):
  h, w = shape
  image = np.zeros((h, w, 1), np.uint8)
  cy, cx = h // 2, w // 2
  image[cy - 10:cy + 10, cx - 10:cx + 10] = 255
  out = augment.resize_and_center_crop(image, 64).numpy()[..., 0]
  assert out.shape == (64, 64)
  rows, cols = np.nonzero(out > 127)
  assert abs(rows.mean() - 31.5) <= 1.0 and abs(cols.mean() - 31.5) <= 1.0
  # floor(64 / 0.875) = 73 on the shorter side: the 20-pixel marker scales by 73 / min(h, w).
  side = 20 * 73 / min(h, w)
  assert abs(np.sqrt((out > 127).sum()) - side) <= 1.5


def test_resize_and_center_crop_identity_at_full_size_and_bad_crop_pct():
  image = random_image(28, 28, 1)
  np.testing.assert_array_equal(augment.resize_and_center_crop(image, 28, crop_pct=1.0), image.astype(np.float32))
  with pytest.raises(ValueError, match='crop_pct'):
    augment.resize_and_center_crop(image, 28, crop_pct=1.5)


def test_normalize_is_in_0_255_units():
  mean, std = (0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255)
  image = np.full((2, 2, 3), 255.0, np.float32)
  out = augment.normalize(image, mean, std).numpy()
  np.testing.assert_allclose(out[0, 0], [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], rtol=1e-5)
  assert augment.normalize(np.zeros((2, 2, 1), np.uint8), (127.5,), (127.5,)).numpy().max() == -1.0
  with pytest.raises(ValueError, match='3 means'):
    augment.normalize(np.zeros((2, 2, 1), np.float32), mean, std)
  with pytest.raises(ValueError, match='positive'):
    augment.normalize(image, (0.0,), (0.0,))


# ----------------------------------------------------------------------------------------------------------------------
# RandAugment: each operation on its own


def test_op_list_is_the_papers_fourteen():
  assert augment.RAND_AUGMENT_OPS == ('Identity', 'AutoContrast', 'Equalize', 'Rotate', 'Solarize', 'Color',
                                      'Posterize', 'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY',
                                      'TranslateX', 'TranslateY')


@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('name', augment.RAND_AUGMENT_OPS)
def test_every_op_keeps_shape_and_dtype(name, channels):
  image = random_image(c=channels)
  out = augment.apply_op(image, name, 7.0)
  assert out.shape == image.shape and out.dtype == tf.uint8


@pytest.mark.parametrize('name', [n for n in augment.RAND_AUGMENT_OPS if n not in ('AutoContrast', 'Equalize')])
def test_magnitude_zero_is_the_identity(name):
  image = random_image()
  np.testing.assert_array_equal(op(image, name, 0.0), image)
  np.testing.assert_array_equal(op(image, name, -0.0), image)


def test_identity_returns_the_input():
  image = random_image()
  np.testing.assert_array_equal(op(image, 'Identity', M_MAX), image)


def test_solarize_inverts_at_and_above_the_threshold():
  image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
  out = op(image, 'Solarize', M_MAX / 2)  # threshold 128
  np.testing.assert_array_equal(out.ravel(), np.where(np.arange(256) >= 128, 255 - np.arange(256), np.arange(256)))
  np.testing.assert_array_equal(op(image, 'Solarize', M_MAX), 255 - image)  # threshold 0: inverts everything
  np.testing.assert_array_equal(op(image, 'Solarize', -M_MAX / 2), out)  # unsigned


def test_posterize_masks_the_low_bits():
  image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
  np.testing.assert_array_equal(op(image, 'Posterize', M_MAX), image & 0xF0)  # 4 bits kept
  np.testing.assert_array_equal(op(image, 'Posterize', M_MAX / 2), image & 0xFC)  # 6 bits kept
  np.testing.assert_array_equal(op(image, 'Posterize', 3 * M_MAX), image & 0x80)  # clamped at 1 bit


def test_brightness_scales_by_the_enhance_factor():
  image = np.full((4, 4, 3), 100, np.uint8)
  np.testing.assert_array_equal(op(image, 'Brightness', M_MAX), 190)  # factor 1.9
  np.testing.assert_array_equal(op(image, 'Brightness', -M_MAX), 10)  # factor 0.1
  np.testing.assert_array_equal(op(image, 'Brightness', -3 * M_MAX), 10)  # never below 0.1


def test_color_on_grey_is_the_identity():
  image = random_image(c=1)
  np.testing.assert_array_equal(op(image, 'Color', M_MAX), image)
  grey_rgb = np.repeat(image, 3, axis=-1)
  np.testing.assert_array_equal(op(grey_rgb, 'Color', -M_MAX), grey_rgb)


def test_auto_contrast_stretches_each_channel_and_leaves_flat_ones():
  image = np.zeros((4, 4, 3), np.uint8)
  image[..., 0] = np.arange(16).reshape(4, 4) + 50  # 50..65
  image[..., 1] = 9  # flat
  image[..., 2] = np.arange(16).reshape(4, 4) * 17  # already 0..255
  out = op(image, 'AutoContrast', 0)
  assert out[..., 0].min() == 0 and out[..., 0].max() == 255
  np.testing.assert_array_equal(out[..., 1], 9)
  np.testing.assert_array_equal(out[..., 2], image[..., 2])


def test_equalize_flattens_the_histogram():
  r = np.random.RandomState(1)
  image = (r.rand(64, 64, 1) * 40 + 100).astype(np.uint8)  # 100..139
  out = op(image, 'Equalize', 0)
  assert out.min() <= 10 and out.max() >= 240
  order = np.argsort(image.ravel(), kind='stable')
  assert (np.diff(out.ravel()[order].astype(int)) >= 0).all()  # a monotone look-up table


PIL_CASES = [('AutoContrast', 0), ('Equalize', 0), ('Solarize', 3), ('Posterize', 6)] + [
    (name, m) for name in ('Color', 'Contrast', 'Brightness', 'Sharpness') for m in (-M_MAX, -3, 4, M_MAX, 1.5 * M_MAX)]


@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('name,magnitude', PIL_CASES)
def test_pixel_ops_match_pil(name, magnitude, channels):
  pytest.importorskip('PIL')
  from PIL import ImageEnhance, ImageOps, Image
  image = random_image(24, 30, channels)
  level = magnitude / M_MAX
  factor = max(0.1, 1 + 0.9 * level)
  reference = {
      'AutoContrast': ImageOps.autocontrast,
      'Equalize': ImageOps.equalize,
      'Solarize': lambda im: ImageOps.solarize(im, 256 - level * 256),
      'Posterize': lambda im: ImageOps.posterize(im, 8 - int(level * 4)),
      'Color': lambda im: ImageEnhance.Color(im).enhance(factor),
      'Contrast': lambda im: ImageEnhance.Contrast(im).enhance(factor),
      'Brightness': lambda im: ImageEnhance.Brightness(im).enhance(factor),
      'Sharpness': lambda im: ImageEnhance.Sharpness(im).enhance(factor),
  }[name]
  expected = np.asarray(reference(Image.fromarray(image if channels == 3 else image[..., 0])))
  np.testing.assert_array_equal(op(image, name, magnitude), expected.reshape(image.shape))


def test_rotate_by_ninety_degrees_is_rot90():
  image = random_image(20, 20)
  magnitude = 90.0 / 30.0 * M_MAX  # 30 degrees per LEVEL_DENOM
  out = op(image, 'Rotate', magnitude)
  assert any(np.array_equal(out, np.rot90(image, k)) for k in (1, -1))
  back = op(out, 'Rotate', -magnitude)
  np.testing.assert_array_equal(back, image)


def test_rotate_changes_the_image_and_fills_corners_grey():
  image = random_image(41, 41)
  out = op(image, 'Rotate', M_MAX)  # 30 degrees
  assert out.shape == image.shape and not np.array_equal(out, image)
  np.testing.assert_array_equal(out[0, 0], 128)
  np.testing.assert_array_equal(out[20, 20], image[20, 20])  # the centre pixel is the pivot


def test_translate_shifts_by_the_documented_fraction():
  image = random_image(10, 20)
  shift = int(round(augment.TRANSLATE_PCT * 20))  # 9 pixels at LEVEL_DENOM
  assert shift == 9
  out = op(image, 'TranslateX', M_MAX)
  np.testing.assert_array_equal(out[:, :20 - shift], image[:, shift:])
  np.testing.assert_array_equal(out[:, 20 - shift:], 128)
  out = op(image, 'TranslateX', -M_MAX)
  np.testing.assert_array_equal(out[:, shift:], image[:, :20 - shift])
  image = random_image(20, 10)
  out = op(image, 'TranslateY', M_MAX)
  np.testing.assert_array_equal(out[:20 - shift], image[shift:])
  np.testing.assert_array_equal(out[20 - shift:], 128)


def test_shear_keeps_the_origin_line_and_slides_the_rest():
  image = random_image(30, 30)
  out = op(image, 'ShearX', M_MAX)  # x_in = x + 0.3 y
  np.testing.assert_array_equal(out[0], image[0])
  np.testing.assert_array_equal(out[10, :20], image[10, 3:23])  # 0.3 * 10 = 3 pixels
  out = op(image, 'ShearY', -M_MAX)  # y_in = y - 0.3 x
  np.testing.assert_array_equal(out[:, 0], image[:, 0])
  np.testing.assert_array_equal(out[3:, 10], image[:27, 10])


# ----------------------------------------------------------------------------------------------------------------------
# RandAugment: the policy


@pytest.mark.parametrize('channels', [1, 3])
def test_rand_augment_is_deterministic_per_seed(channels):
  image = random_image(c=channels)
  a = augment.rand_augment(image, seed(3, 4), 2, 9)
  assert a.shape == image.shape and a.dtype == tf.uint8
  np.testing.assert_array_equal(a, augment.rand_augment(image, seed(3, 4), 2, 9))
  outputs = {augment.rand_augment(image, seed(i, 4), 2, 9).numpy().tobytes() for i in range(8)}
  assert len(outputs) >= 4


def test_rand_augment_restricted_ops():
  image = random_image()
  for i in range(6):
    np.testing.assert_array_equal(augment.rand_augment(image, seed(i), 3, M_MAX, ops=('Identity',)), image)
    np.testing.assert_array_equal(augment.rand_augment(image, seed(i), 1, M_MAX, ops=('Solarize',)), 255 - image)
  chosen = {augment.rand_augment(image, seed(i), 1, M_MAX, ops=['Identity', 'Solarize']).numpy().tobytes()
            for i in range(20)}
  assert chosen == {image.tobytes(), (255 - image).tobytes()}


def test_rand_augment_zero_layers_and_bad_arguments():
  image = random_image()
  np.testing.assert_array_equal(augment.rand_augment(image, seed(), 0), image)
  with pytest.raises(ValueError, match='valid: Identity, AutoContrast'):
    augment.rand_augment(image, seed(), ops=('Rotate', 'Invert'))
  with pytest.raises(ValueError, match='uint8'):
    augment.rand_augment(image.astype(np.float32), seed())
  with pytest.raises(ValueError, match='magnitude'):
    augment.rand_augment(image, seed(), magnitude=31)


def test_magnitude_std_draws_a_magnitude_per_op():
  image = random_image()
  fixed = {augment.rand_augment(image, seed(i), 1, 5, ops=('Brightness',)).numpy().tobytes() for i in range(12)}
  assert len(fixed) == 2  # +-5 only
  drawn = {augment.rand_augment(image, seed(i), 1, 5, 3.0, ops=('Brightness',)).numpy().tobytes() for i in range(12)}
  assert len(drawn) > 4
  np.testing.assert_array_equal(augment.rand_augment(image, seed(1), 2, 5, 3.0),
                                augment.rand_augment(image, seed(1), 2, 5, 3.0))


# ----------------------------------------------------------------------------------------------------------------------
# Random erasing


def test_random_erasing_replaces_one_rectangle():
  image = np.full((40, 50, 3), 7.0, np.float32)
  for i in range(8):
    out = augment.random_erasing(image, seed(i, 2), probability=1.0).numpy()
    assert out.shape == image.shape and out.dtype == np.float32
    changed = (out != 7.0).any(axis=-1)
    rows, cols = np.nonzero(changed)
    assert rows.size > 0
    box = changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all()  # a filled rectangle, nothing outside it
    assert 0.015 <= box.size / (40 * 50) <= 0.36
    np.testing.assert_array_equal(out, augment.random_erasing(image, seed(i, 2), probability=1.0))
  noise = out[changed]
  assert abs(noise.mean()) < 0.5 and 0.5 < noise.std() < 1.5


def test_random_erasing_probability():
  image = np.full((20, 20, 1), 7.0, np.float32)
  np.testing.assert_array_equal(augment.random_erasing(image, seed(1), probability=0.0), image)
  erased = sum(not np.array_equal(augment.random_erasing(image, seed(i), 0.25), image) for i in range(80))
  assert 8 <= erased <= 35
  with pytest.raises(ValueError, match='float'):
    augment.random_erasing(image.astype(np.uint8), seed())


# ----------------------------------------------------------------------------------------------------------------------
# Inside tf.data: graph mode, parallel map, and independence from processing order


@pytest.mark.slow
def test_pipeline_in_dataset_map_is_order_independent():
  images = [random_image(36 + 4 * i, 44, rng=i) for i in range(6)]
  encoded = [tf.io.encode_jpeg(im) if i % 2 else tf.io.encode_png(im) for i, im in enumerate(images)]
  base = seed(42, 0)

  def preprocess(index, data):
    seeds = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(base, index), 4)
    image = augment.decode_and_inception_crop(data, seeds[0], 24)
    image = augment.random_flip(image, seeds[1])
    image = tf.cast(augment.rand_augment(tf.cast(tf.round(image), tf.uint8), seeds[2], 2, 9, 0.5), tf.float32)
    image = augment.normalize(image, (127.5,) * 3, (64.0,) * 3)
    return index, augment.random_erasing(image, seeds[3], 0.5)

  def run(order):
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(order, tf.int64), tf.stack([encoded[i] for i in order])))
    ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    return {int(i): x for i, x in ds.as_numpy_iterator()}

  forward = run(list(range(6)))
  shuffled = run([4, 1, 5, 0, 3, 2])
  assert sorted(forward) == list(range(6))
  for i in range(6):
    assert forward[i].shape == (24, 24, 3) and forward[i].dtype == np.float32
    np.testing.assert_array_equal(forward[i], shuffled[i])
  eager = preprocess(tf.constant(3, tf.int64), encoded[3])[1]
  np.testing.assert_allclose(eager, forward[3], atol=1e-5)
