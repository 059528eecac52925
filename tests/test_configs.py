"""configs/resnet_rs.py: the paper's table follows from the scaling rules."""
import pytest

from configs import resnet_rs

# Bello et al. 2021, the eleven ResNet-RS configurations: (depth, res) -> (dropout, stochastic depth, RandAugment M).
PAPER = {
    (50, 160): (0.25, 0.0, 10), (101, 160): (0.25, 0.0, 10), (101, 192): (0.25, 0.0, 15),
    (152, 192): (0.25, 0.0, 15), (152, 224): (0.25, 0.0, 15), (152, 256): (0.25, 0.0, 15),
    (200, 256): (0.25, 0.1, 15), (270, 256): (0.25, 0.1, 15), (350, 256): (0.25, 0.1, 15),
    (350, 320): (0.4, 0.1, 15), (420, 320): (0.4, 0.1, 15),
}


@pytest.mark.parametrize('depth,res', sorted(PAPER))
def test_rules_reproduce_the_paper_table(depth, res):
  c = resnet_rs.get_config(f'{depth}-{res}')
  dropout, sd, magnitude = PAPER[depth, res]
  assert c.model == f'resnetrs{depth}'
  assert c.input.image_size == res
  assert c.model_kwargs.dropout_rate == dropout
  assert c.model_kwargs.stochastic_depth_rate == sd
  assert (c.input.randaugment_layers, c.input.randaugment_magnitude) == (2, magnitude)
  assert c.ema_decay == 0.9999 and c.batch_size == 4096 and c.num_epochs == 350
  assert (c.optimizer, c.momentum, c.nesterov, c.learning_rate) == ('sgd', 0.9, True, 0.1)
  assert (c.weight_decay, c.label_smoothing, c.warmup_epochs) == (4e-5, 0.1, 5.0)
  assert c.model_kwargs.dtype == 'bfloat16'


def test_published_table_is_the_papers():
  assert set(resnet_rs.PUBLISHED) == set(PAPER)


@pytest.mark.parametrize('arg,expected', [('101-224', (0.25, 0.0, 15)), ('200-320', (0.4, 0.1, 15)),
                                          ('50-128', (0.25, 0.0, 10)), ('420-416', (0.4, 0.1, 15))])
def test_other_pairs_follow_the_rules(arg, expected):
  c = resnet_rs.get_config(arg)
  assert (c.model_kwargs.dropout_rate, c.model_kwargs.stochastic_depth_rate, c.input.randaugment_magnitude) == expected


@pytest.mark.parametrize('arg', ['51-160', '50-161', '50', 'fifty-160'])
def test_bad_arguments_are_refused(arg):
  with pytest.raises(ValueError):
    resnet_rs.get_config(arg)
