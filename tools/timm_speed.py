"""The PyTorch reference for zoo-benchmark: timm's model on this machine, same batch, resolution and dtype (float32).

  python tools/timm_speed.py --model=resnetrs50 --image_size=160 --batch_size=8 --mode=infer|train --steps=10

Prints one JSON line: images_per_sec as the median over `steps` timed calls after `warmup` calls, with the
slowest and fastest. infer is the eval forward under torch.inference_mode; train is forward, cross-entropy,
backward, an SGD step with Nesterov momentum and weight decay (ResNet-RS's optimiser) and, unless
--ema_decay=0, the update of an exponential moving average of the weights and BN statistics (timm's ModelEmaV3), as
zoo-benchmark's train mode times the trainer's step, which keeps the recipe's EMA. Needs torch and timm, which the
zoo itself never imports (see tools/torchvision_stub.py); run it in an environment of its own.
"""
import argparse
import json
import os
import statistics
import time

import torchvision_stub  # tools/, the script's own folder, is on the import path

torchvision_stub.install()
import timm  # noqa: E402
import torch  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--model', default='resnetrs50')
  p.add_argument('--image_size', type=int, default=160)
  p.add_argument('--batch_size', type=int, default=8)
  p.add_argument('--mode', choices=('infer', 'train'), default='infer')
  p.add_argument('--steps', type=int, default=10)
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--ema_decay', type=float, default=0.9999, help='0: no weight EMA in the train step')
  p.add_argument('--threads', type=int, default=os.cpu_count())
  args = p.parse_args()
  torch.set_num_threads(args.threads)
  kwargs = {'img_size': args.image_size} if args.model.startswith('volo') else {}
  model = timm.create_model(args.model, **kwargs).to(memory_format=torch.channels_last)
  x = torch.randn(args.batch_size, 3, args.image_size, args.image_size).to(memory_format=torch.channels_last)
  labels = torch.randint(0, 1000, (args.batch_size,))
  if args.mode == 'infer':
    model.eval()

    def call():
      with torch.inference_mode():
        model(x)
  else:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=4e-5)
    ema = timm.utils.ModelEmaV3(model, decay=args.ema_decay) if args.ema_decay else None

    def call():
      opt.zero_grad(set_to_none=True)
      out = model(x)
      out = out[0] if isinstance(out, tuple) else out
      torch.nn.functional.cross_entropy(out, labels).backward()
      opt.step()
      if ema is not None:
        ema.update(model)
  for _ in range(args.warmup):
    call()
  times = []
  for _ in range(args.steps):
    t = time.perf_counter()
    call()
    times.append(time.perf_counter() - t)
  print(json.dumps({'model': args.model, 'image_size': args.image_size, 'batch_size': args.batch_size,
                    'mode': args.mode, 'framework': f'timm {timm.__version__}, torch {torch.__version__}',
                    'threads': args.threads, 'ema_decay': args.ema_decay if args.mode == 'train' else None,
                    'images_per_sec': round(args.batch_size / statistics.median(times), 2),
                    'images_per_sec_min': round(args.batch_size / max(times), 2),
                    'images_per_sec_max': round(args.batch_size / min(times), 2)}))


if __name__ == '__main__':
  main()
