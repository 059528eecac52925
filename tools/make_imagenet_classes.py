"""Writes zoo/data/imagenet_classes.txt: the 1,000 ImageNet-1k classes in the standard order (the synset ids sorted,
the order of TFDS's imagenet2012 labels and of every published ImageNet-1k classifier), one per line as
`<synset id><TAB><WordNet lemmas>`.

The lemmas come from the data files that the timm package ships (timm/data/_info), read as data; torch is not
imported. Run with an environment that has timm, from the repository's root:

  /tmp/timmvenv/bin/python tools/make_imagenet_classes.py

tests/test_pretrained.py checks the file's order against TFDS's labels file in the test environment.
"""
import importlib.util
import os

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'zoo', 'data', 'imagenet_classes.txt')


def main():
  info = os.path.join(os.path.dirname(importlib.util.find_spec('timm').origin), 'data', '_info')
  with open(os.path.join(info, 'imagenet_synsets.txt')) as f:
    synsets = f.read().split()
  lemmas = {}
  with open(os.path.join(info, 'imagenet_synset_to_lemma.txt')) as f:
    for line in f:
      synset, lemma = line.rstrip('\n').split('\t', 1)
      lemmas[synset] = lemma
  assert len(synsets) == 1000 and synsets == sorted(synsets), 'not the 1,000 classes in sorted order'
  with open(OUT, 'w') as f:
    f.writelines(f'{s}\t{lemmas[s]}\n' for s in synsets)
  print(f'wrote {OUT}: {len(synsets)} classes, {os.path.getsize(OUT)} bytes')


if __name__ == '__main__':
  main()
