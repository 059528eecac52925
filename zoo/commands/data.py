"""Makes a prepared TFDS dataset readable by the zoo's input: `zoo-data convert NAME --data_dir=DIR`.

The zoo reads TFDS datasets at random through their ArrayRecord files (zoo/data/sources.py); a dataset prepared in
TFDS's default TFRecord format has to be converted once. Both formats hold the same serialized examples, so this
copies each TFRecord shard's records, in order, into an ArrayRecord shard named as TFDS names them, beside the
original, and adds ArrayRecord to the dataset's formats in its dataset_info.json. The TFRecord files stay as they
were; shards already converted are left alone, so an interrupted conversion resumes. Needs no TensorFlow.

  zoo-data convert imagenet2012 --data_dir=~/tensorflow_datasets [--version=5.1.0]
"""
import glob
import json
import os
import re
import struct

from absl import flags, logging

from zoo import cli
from zoo.errors import UserError

FLAGS = flags.FLAGS
SHARD = re.compile(r'^(?P<prefix>.+)\.tfrecord-(?P<shard>\d{5}-of-\d{5})$')


def define_flags() -> None:
  flags.DEFINE_string('data_dir', None, 'The TFDS data_dir that holds NAME/[CONFIG/]VERSION/.')
  flags.DEFINE_string('version', None, 'The version to convert; default: every prepared version.')
  flags.mark_flags_as_required(['data_dir'])


def tfrecords(path: str):
  """The records of a TFRecord file (length, its CRC, data, its CRC per record; the CRCs are not checked)."""
  with open(path, 'rb') as f:
    while header := f.read(12):
      if len(header) < 12:
        raise UserError(f'{path} ends in a truncated record header: the file is damaged')
      (length,) = struct.unpack('<Q', header[:8])
      data = f.read(length + 4)
      if len(data) < length + 4:
        raise UserError(f'{path} ends in a truncated record: the file is damaged')
      yield data[:length]


def convert_version_dir(version_dir: str) -> int:
  """Converts the TFRecord shards of one prepared version; returns the count of shards written."""
  from array_record.python import array_record_module
  info_path = os.path.join(version_dir, 'dataset_info.json')
  with open(info_path) as f:
    info = json.load(f)
  written = 0
  for path in sorted(glob.glob(os.path.join(version_dir, '*.tfrecord-*-of-*'))):
    match = SHARD.match(os.path.basename(path))
    if not match:
      continue
    out = os.path.join(version_dir, f'{match["prefix"]}.array_record-{match["shard"]}')
    if os.path.exists(out):
      continue
    partial = out + '.incomplete'
    writer = array_record_module.ArrayRecordWriter(partial, 'group_size:1')  # TFDS's own setting: random access
    for record in tfrecords(path):
      writer.write(record)
    writer.close()
    os.replace(partial, out)
    written += 1
    logging.info('wrote %s', out)
  formats = info.get('alternativeFileFormats', [])
  if info.get('fileFormat', 'tfrecord') != 'array_record' and 'array_record' not in formats:
    info['alternativeFileFormats'] = formats + ['array_record']
    with open(info_path + '.incomplete', 'w') as f:
      json.dump(info, f, indent=2)
    os.replace(info_path + '.incomplete', info_path)
  return written


def version_dirs(name: str, data_dir: str, version: str | None) -> list[str]:
  """Every prepared NAME[/CONFIG]/VERSION folder under data_dir (of `version` only, if given)."""
  root = os.path.join(os.path.expanduser(data_dir), name)
  found = [os.path.dirname(p) for p in glob.glob(os.path.join(root, '**', 'dataset_info.json'), recursive=True)]
  found = sorted(d for d in found if (version is None or os.path.basename(d) == version)
                 and 'incomplete' not in os.path.basename(d))
  if not found:
    raise UserError(f'no prepared {name!r}{f" version {version}" if version else ""} under {root} (looked for '
                    f'{root}/[CONFIG/]VERSION/dataset_info.json): prepare it first, e.g. `tfds build {name} '
                    f'--data_dir={data_dir}`')
  return found


def main(argv):
  if len(argv) != 3 or argv[1] != 'convert':
    raise UserError('usage: zoo-data convert NAME --data_dir=DIR [--version=VERSION]')
  for d in version_dirs(argv[2], FLAGS.data_dir, FLAGS.version):
    written = convert_version_dir(d)
    print(json.dumps({'dataset_dir': d, 'shards_written': written}))


def run() -> None:
  define_flags()
  cli.run(main, __doc__)
