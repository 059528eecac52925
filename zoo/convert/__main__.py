"""Converts timm weights into a zoo checkpoint that zoo-eval evaluates (zoo-convert, or `python -m zoo.convert`).

  zoo-convert --model resnetrs50 --weights resnetrs50_ema.safetensors --out runs/rs50_timm
  zoo-convert --model resnetrs50 --weights small.pth --out DIR \\
      --model_kwargs='{"stage_depths": [1, 1, 1, 1], "width_multiplier": 0.125, "num_classes": 10}'
  zoo-convert --pretrained resnetrs50 --out DIR        # the card's published weights (zoo.load_pretrained)
  zoo-convert --pretrained hf-hub:timm/volo_d1_384.sail_in1k --out DIR

Writes DIR/checkpoints/0 with `params` and `batch_stats`, and a config naming the model, its overrides and the
source file. Bad input ends in one `error: ...` line (the weights' mismatches on the lines below it) and exit code 1.
The environment defaults of the other commands apply (zoo/cli.py).
"""
import argparse
import os
import sys

from zoo import checkpoint, cli, pretrained, registry
from zoo.errors import UserError


def parse_args(argv):
  p = argparse.ArgumentParser(prog='zoo-convert', description=__doc__.split('\n')[0])
  p.add_argument('--model', help='zoo model name, e.g. resnetrs50 (with --pretrained: taken from the weights)')
  source = p.add_mutually_exclusive_group(required=True)
  source.add_argument('--weights', help='timm weights: .safetensors, or a torch file (.pth, .pth.tar, .bin)')
  source.add_argument('--pretrained', help='published weights: a model name, hf-hub:ORG/REPO or a hub folder')
  p.add_argument('--out', required=True, help='output directory; must not hold checkpoints yet')
  p.add_argument('--num_classes', type=int, help='classifier size, if not the model default (1000)')
  p.add_argument('--model_kwargs', default='{}', help='other create_model overrides, as a JSON object')
  p.add_argument('--checkpoint_key', help='entry of a training checkpoint that holds the weights (default: the '
                 'first of state_dict_ema, model_ema, state_dict, model)')
  return p.parse_args(argv)


def model_kwargs(args) -> dict:
  kwargs = cli.json_object(args.model_kwargs, '--model_kwargs')
  if args.num_classes is not None:
    kwargs['num_classes'] = args.num_classes
  return kwargs


def convert(args) -> str:
  """Reads, converts and saves; returns the checkpoint directory."""
  kwargs = model_kwargs(args)
  if args.pretrained:
    weights = pretrained.resolve(args.pretrained, args.model)
    kwargs, source = {**weights.overrides, **kwargs}, args.pretrained
  elif args.model is None:
    raise UserError('--weights needs --model: the zoo model the weights are of')
  try:  # an unknown model or override fails before the file is read
    registry.create_model(args.model if args.weights else weights.model, **kwargs)
  except (TypeError, ValueError) as e:  # UserError, or a check_config message
    raise UserError(str(e)) from None
  if args.weights:
    weights, source = pretrained.resolve(args.weights, args.model), os.path.abspath(args.weights)
  ckpt = checkpoint.checkpoint_dir(args.out)
  if os.path.isdir(ckpt) and os.listdir(ckpt):
    raise UserError(f'{ckpt} already holds checkpoints; choose another --out directory')
  try:
    return pretrained.save_converted(args.out, weights, kwargs, source, args.checkpoint_key)
  except FileExistsError as e:  # written by someone else since the check above
    raise UserError(str(e)) from None


def main(argv=None):
  cli.environment_defaults(os.environ, cli.jax_runs_on_cpu_only(os.environ))
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    path = convert(args)
  except UserError as e:
    sys.exit(f'error: {e}')
  print(f'wrote {path} (from {args.pretrained or args.weights})')


if __name__ == '__main__':
  main()
