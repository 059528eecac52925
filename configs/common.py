"""Defaults shared by the configs: `trainer()` holds what zoo/trainer.py reads (optimiser, schedule, EMA,
parallelism, logging, checkpoints), `classification()` adds the classification task's model, data and input keys;
each experiment file overrides what it changes."""
import ml_collections

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def trainer() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.batch_size = 256  # global, over all devices and hosts
  c.num_epochs = 90.0
  c.num_train_steps = -1  # > 0 overrides num_epochs
  c.optimizer = 'sgd'
  c.learning_rate = 0.1  # per lr_base_batch examples; the peak is learning_rate * batch_size / lr_base_batch
  c.lr_base_batch = 256
  c.end_learning_rate = 0.0
  c.warmup_epochs = 5.0
  c.cooldown_epochs = 0.0  # the last epochs stay at end_learning_rate (timm's cooldown); part of num_epochs
  c.schedule = 'cosine'  # linear warm-up then cosine; 'step': constant, times lr_step_factor at each boundary
  c.lr_step_boundaries = (0.5,)  # 'step' schedule: fractions of training
  c.lr_step_factor = 0.1
  c.momentum = 0.9
  c.nesterov = True
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.weight_decay = 4e-5
  c.ema_decay = 0.9999
  # A workdir (or `python -m zoo.convert` output) whose latest weights start a fresh run: see zoo/finetune.py.
  c.init_from = ml_collections.FieldReference(None, field_type=str)

  c.parallelism = 'pmap'  # or 'shard_map'
  c.seed = 0
  c.log_every_steps = 100
  c.eval_every_steps = 5000
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.max_nonfinite_steps = 5  # steps in a row with a non-finite loss or gradients (each rejected) before the run stops
  # Hardware policies: None chooses by backend (True on accelerators, False on CPU). Both settings train the same bits.
  # donate_state: steps update the train state in place (one copy of the state less; slower on CPU, zoo/parallel.py).
  c.donate_state = ml_collections.FieldReference(None, field_type=bool)
  # late_verdict: each step's non-finite verdict is read when the next step is queued, not waited for (zoo/faults.py).
  c.late_verdict = ml_collections.FieldReference(None, field_type=bool)
  c.profile = False
  return c


def image_to_image(c: ml_collections.ConfigDict, batch_size: int, log_every: int,
                   eval_every: int) -> ml_collections.ConfigDict:
  """`c` with the optimiser of the image-to-image recipes (denoisers, PD-Net, FaceGuard): AdamW at 1e-3 for a batch of
  `batch_size`, no weight decay and no EMA (their evaluation uses the trained weights); a log line every `log_every`
  steps, an evaluation and a checkpoint every `eval_every`."""
  c.batch_size = c.lr_base_batch = batch_size
  c.optimizer = 'adamw'
  c.learning_rate = 1e-3
  c.weight_decay = 0.0
  c.ema_decay = 0.0
  c.log_every_steps = log_every
  c.eval_every_steps = c.checkpoint_every_steps = eval_every
  return c


def classification() -> ml_collections.ConfigDict:
  c = trainer()
  c.task = 'classification'
  c.model = 'resnetrs50'
  # dtype: of the computation (params stay float32); remat: recompute activations in the backward pass (memory)
  c.model_kwargs = ml_collections.ConfigDict(dict(dtype='float32', remat=False))

  c.dataset = 'imagenet2012'
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.train_split = 'train'
  c.eval_split = 'validation'
  # image_folder: the classes and their order as a file lists them, one per line (its folder name first), or
  # 'imagenet' (ImageNet-1k's synsets, which ship with the zoo): to evaluate weights trained on other classes.
  c.class_index = ml_collections.FieldReference(None, field_type=str)
  c.input = ml_collections.ConfigDict(dict(
      image_size=224,
      eval_image_size=0,  # 0: same as image_size
      channels=3,
      crop_pct=0.875,  # eval: resize to image_size / crop_pct, centre crop
      # eval resize: None, OpenCV's bilinear; 'bicubic' / 'bilinear', Pillow's antialiased filter as timm evaluates
      interpolation=ml_collections.FieldReference(None, field_type=str),
      area_range=(0.08, 1.0),  # Inception crop
      flip=True,
      randaugment_layers=2,
      randaugment_magnitude=10,
      randaugment_magnitude_std=0.0,
      randaugment_ops=(),  # () = all of RandAugment's operations
      random_erasing=0.0,  # probability of erasing one box of the normalised image (timm's reprob, mode 'pixel')
      token_labels=False,  # examples carry 'token_labels', a dense [H', W'] int label map (see zoo/data/pipeline.py)
      mean=IMAGENET_MEAN,
      std=IMAGENET_STD,
      cache=False,  # hold the training split's encoded records in host memory (small splits; every host reads all)
      threads=0,  # threads that prepare the next batches in the training process; 0: one per core
      workers=0,  # grain worker processes that prepare them instead, when above 0 (for heavy augmentation)
      corrupt_images='skip',  # image_folder: undecodable images are logged, counted and skipped; 'error': fatal
  ))

  c.label_smoothing = 0.1
  return c
