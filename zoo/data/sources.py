"""Where the classification examples come from: random-access data sources that grain reads without TensorFlow.

- A TFDS dataset prepared in the ArrayRecord format (`tfds.data_source`): records are read one by one at any index,
  images left encoded. A dataset prepared only as TFRecord files cannot be read at random; the error names the
  command that converts it in place (`zoo-data convert`, zoo/commands/data.py).
- A folder of images, ROOT/<split>/<class>/<image>: a sorted file list, classes in sorted order of their folder
  names over all splits, or in the order of a class index (`read_class_index`: the classes of weights trained
  elsewhere, e.g. ImageNet's 1,000, of which the folder may hold a few). A folder is whatever the user copied, so
  each image is decoded once per run and the undecodable ones are logged, counted and left out before anything is
  shuffled (or, with `input.corrupt_images=error`, reported as an error).

Every record is a dict {'image': encoded bytes, 'label': int} (plus 'token_labels' where the dataset has them).
"""
import functools
import os

from absl import logging

from zoo.errors import DatasetError

IMAGE_FOLDER = 'image_folder'
OFFLINE_DATASETS = {'mnist5k'}  # builders that need no download: prepared on first use
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff')
IMAGENET = 'imagenet'  # the class index that ships with the zoo: ImageNet-1k's synsets in their standard order


def open_dataset(name: str, data_dir: str | None, class_index: str | None = None):
  """The dataset `name` (a TFDS name or 'image_folder'), or a DatasetError that says how to make it readable.
  `class_index` (image folders only; see read_class_index) fixes the classes and their order."""
  if name == IMAGE_FOLDER:
    return ImageFolder(data_dir, read_class_index(class_index) if class_index else None)
  if class_index:
    raise DatasetError(f'class_index is for image folders; dataset {name!r} has its own classes')
  return TfdsDataset(name, data_dir)


def read_class_index(spec: str) -> list[tuple[str, str]]:
  """(folder name, description) of each class, class i on line i of the file `spec`: its first word is the name of
  the class's folder, the rest of the line describes it. 'imagenet' is the file that ships with the zoo
  (zoo/data/imagenet_classes.txt: `n01440764<TAB>tench, Tinca tinca` ..., the order of every ImageNet-1k
  classifier), with which an image folder of ImageNet synset folders evaluates published weights."""
  path = os.path.join(os.path.dirname(__file__), 'imagenet_classes.txt') if spec == IMAGENET else spec
  try:
    with open(path) as f:
      lines = [line.split(None, 1) for line in f.read().splitlines()]
  except (OSError, UnicodeDecodeError) as e:
    raise DatasetError(f'cannot read the class index {spec}: {e}; want a text file, one class per line (its folder '
                       f'name first), or {IMAGENET!r}') from None
  if not lines or any(not words for words in lines):
    raise DatasetError(f'class index {spec} has an empty line or none at all: want one class per line, its folder '
                       'name first')
  names = [words[0] for words in lines]
  if len(set(names)) < len(names):
    raise DatasetError(f'class index {spec} names a folder twice: {sorted({n for n in names if names.count(n) > 1})}')
  return [(words[0], words[1] if len(words) > 1 else '') for words in lines]


class TfdsDataset:
  """A TFDS dataset prepared as ArrayRecord (module docstring)."""

  def __init__(self, name: str, data_dir: str | None):
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import file_adapters
    if name in OFFLINE_DATASETS:
      from zoo.data import mnist5k  # noqa: F401  (registers the builder with TFDS)
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
      raise DatasetError(f'Unknown TFDS dataset {name!r}; see `tfds.list_builders()` or use '
                         'dataset=image_folder') from None
    if not builder.is_prepared():
      if name not in OFFLINE_DATASETS:
        raise DatasetError(
            f'Dataset {name!r} is not prepared in {builder.data_dir}: run `tfds build {name} --data_dir=DIR '
            f'--file_format=array_record` and pass --config.data_dir=DIR (imagenet2012 needs its tar files in '
            'DIR/downloads/manual first; building needs TensorFlow: pip install "zoo[tensorflow]")')
      builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
      builder.download_and_prepare()
    array_record = file_adapters.FileFormat.ARRAY_RECORD
    if array_record not in builder.info.available_file_formats():
      # A registered builder keeps the formats that dataset_info.json adds (`zoo-data convert`) in its proto only.
      if array_record.value in builder.info.as_proto.alternative_file_formats:
        # (add_alternative_file_format would add it to the proto a second time)
        builder.info._alternative_file_formats.append(array_record)  # noqa: SLF001
    if array_record not in builder.info.available_file_formats():
      raise DatasetError(
          f'Dataset {name!r} in {builder.data_dir} is stored as {builder.info.file_format.value} only, which cannot '
          f'be read at random: convert it once with `zoo-data convert {name} --data_dir={builder.data_dir_root}` '
          '(keeps the TFRecord files; needs no TensorFlow)')
    self.name, self._builder = name, builder

  @functools.cached_property
  def splits(self) -> dict[str, int]:
    return {name: split.num_examples for name, split in self._builder.info.splits.items()}

  def size(self, split: str) -> int:
    """Examples of `split` (a name or a TFDS slice such as 'train[:99%]')."""
    try:
      return self._builder.info.splits[split].num_examples
    except (KeyError, ValueError):
      raise DatasetError(f'Dataset {self.name!r} has no split {split!r}; splits: {sorted(self.splits)}') from None

  @property
  def num_classes(self) -> int:
    return self._builder.info.features['label'].num_classes

  @property
  def features(self) -> list[str]:
    return sorted(self._builder.info.features)

  def check_images(self, split: str, policy: str) -> None:
    """Nothing to check: TFDS decoded every image when it prepared the dataset."""
    check_policy(policy)

  def source(self, split: str):
    """`split` as a sequence of records, images encoded."""
    import tensorflow_datasets as tfds
    self.size(split)
    return self._builder.as_data_source(split=split, decoders={'image': tfds.decode.SkipDecoding()})


def check_policy(policy: str) -> None:
  if policy not in ('skip', 'error'):
    raise DatasetError(f"input.corrupt_images must be 'skip' or 'error', got {policy!r}")


class ImageFolder:
  """ROOT/<split>/<class>/<image> (module docstring)."""

  def __init__(self, root: str | None, class_index: list[tuple[str, str]] | None = None):
    if not root or not os.path.isdir(root):
      raise DatasetError(f'image_folder needs --config.data_dir=ROOT with ROOT/<split>/<class>/<image>; '
                         f'{root!r} is not a directory')
    self.name, self.root = IMAGE_FOLDER, root
    self._unreadable = {}
    self.splits = {}
    classes = set()
    for split in sorted(os.listdir(root)):
      if os.path.isdir(os.path.join(root, split)):
        folders = [c for c in os.listdir(os.path.join(root, split)) if os.path.isdir(os.path.join(root, split, c))]
        self.splits[split] = folders
        classes.update(folders)
    if not classes:
      raise DatasetError(f'image_folder {root} holds no ROOT/<split>/<class>/ folders')
    self.classes = [name for name, _ in class_index] if class_index else sorted(classes)
    unknown = sorted(classes - set(self.classes))
    if unknown:
      raise DatasetError(f'image_folder {root} has class folders that the class index does not list: '
                         f'{", ".join(unknown[:5])}{" ..." if len(unknown) > 5 else ""}')

  @functools.cache
  def files(self, split: str) -> list[tuple[str, int]]:
    """(path, label) of every image of `split`, sorted by class and file name."""
    if split not in self.splits:
      raise DatasetError(f'image_folder {self.root} has no split {split!r}; splits: {sorted(self.splits)}')
    out = []
    for c in sorted(self.splits[split]):
      folder, label = os.path.join(self.root, split, c), self.classes.index(c)
      out += [(os.path.join(folder, f), label) for f in sorted(os.listdir(folder))
              if f.lower().endswith(IMAGE_SUFFIXES)]
    if not out:
      raise DatasetError(f'image_folder split {split!r} has no images ({", ".join(IMAGE_SUFFIXES)}) under '
                         f'{os.path.join(self.root, split)}/<class>/')
    return out

  def size(self, split: str) -> int:
    """Readable images of `split`."""
    return len(self.files(split)) - len(self.unreadable(split))

  @property
  def num_classes(self) -> int:
    return len(self.classes)

  @property
  def features(self) -> list[str]:
    return ['image', 'label']

  def unreadable(self, split: str) -> list[tuple[str, str]]:
    """(path, reason) of each image of `split` that OpenCV cannot decode; scanned once per run and logged."""
    if split not in self._unreadable:
      from zoo.data import transforms
      bad = []
      for path, _ in self.files(split):
        with open(path, 'rb') as f:
          data = f.read()
        try:  # the decoder the input uses, so that what passes here decodes there (an empty file included)
          transforms.decode(data, 3)
        except DatasetError:
          bad.append((path, f'not a decodable image ({len(data)} bytes)'))
      if bad:
        logging.warning('%d of %d images of split %r cannot be decoded and are skipped (input.corrupt_images=error '
                        'makes this fatal): %s', len(bad), len(self.files(split)), split,
                        '; '.join(f'{p}: {m}' for p, m in bad[:5]) + ('; ...' if len(bad) > 5 else ''))
      self._unreadable[split] = bad
    return self._unreadable[split]

  def check_images(self, split: str, policy: str) -> None:
    """Scans `split` (see `unreadable`); with policy 'error' an undecodable image is a DatasetError."""
    check_policy(policy)
    bad = self.unreadable(split)
    if bad and policy == 'error':
      raise DatasetError(f'{len(bad)} images of split {split!r} cannot be decoded, e.g. {bad[0][0]} ({bad[0][1]}); '
                         'remove or replace them, or set --config.input.corrupt_images=skip')

  def source(self, split: str):
    bad = {path for path, _ in self.unreadable(split)}
    return FileSource([(p, label) for p, label in self.files(split) if p not in bad])


class FileSource:
  """A list of (path, label) as grain's random-access data source: record i is the file's bytes and its label."""

  def __init__(self, files: list[tuple[str, int]]):
    self._files = files

  def __len__(self) -> int:
    return len(self._files)

  def __getitem__(self, index: int) -> dict:
    path, label = self._files[index]
    with open(path, 'rb') as f:
      return {'image': f.read(), 'label': label}
