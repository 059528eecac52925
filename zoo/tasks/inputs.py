"""Networks of several inputs under the trainer, which initialises and applies a model on one."""
import flax.linen as nn


class NamedInputs(nn.Module):
  """Takes a dict and calls `net` with its entries `names`, in order. It shares the network's scope, so the
  parameters and checkpoints are the bare network's and a task may apply `net` itself."""
  net: nn.Module
  names: tuple[str, ...]

  def setup(self):
    nn.share_scope(self, self.net)

  def __call__(self, inputs, train: bool = False):
    return self.net(*(inputs[name] for name in self.names), train=train)
