"""Every bad config value named in the issue gives one clear line, before anything is built."""


import pytest

from configs import default
from frem_jax import train
from frem_jax.config_validation import validate_config
from frem_jax.errors import UserError
from tests.tiny import tiny_config

BAD = [
    ({'frem.num_selected': -1}, r'frem.num_selected \(B\)=-1 must be an integer in \[0, 16\]'),
    ({'frem.num_selected': 17}, r'frem.num_selected \(B\)=17 must be an integer in \[0, 16\], the channels of the deepest stage \(model.features\[-1\]=16\)'),
    ({'frem.factor': 0.0}, r'frem.factor \(X\)=0.0 must be > 0'),
    ({'frem.factor': -3.0}, r'frem.factor \(X\)=-3.0 must be > 0'),
    ({'supervision.weight': 1.5}, r'supervision.weight \(λ\)=1.5 must be in \[0, 1\]'),
    ({'supervision.weight': -0.1}, r'supervision.weight \(λ\)=-0.1 must be in \[0, 1\]'),
    ({'dataset.image_size': 34, 'model.features': (4, 8, 16)}, r'dataset.image_size=34 is not divisible by 2\*\*2=4'),
    ({'model.norm': 'layer_norm'}, r"model.norm='layer_norm' must be one of"),
    ({'frem.mode': 'sometimes'}, r"frem.mode='sometimes' must be one of"),
    ({'num_epochs': 0}, r'num_epochs=0 must be an integer >= 1'),
    ({'dataset.name': 'imagenet'}, r"dataset.name='imagenet' is not one of"),
    ({'eval.frem_at_test': True, 'frem.enabled': False},
     r'eval.frem_at_test=True needs frem.enabled=True'),
    ({'model.layers': 'cudnn'}, r"model.layers='cudnn' must be one of \('auto', 'flax', 'cpu'\)"),
    ({'eval.full_section_overlap': -1}, r'eval.full_section_overlap=-1 must be an integer >= 0'),
    ({'dataset.name': 'drosophila_vnc', 'eval.full_section_overlap': 32},
     r'eval.full_section_overlap=32 must be below dataset.image_size=32, the window size'),
    ({'dataset.classes': (0, 255)},
     r"dataset.classes=\(0, 255\) must be \(mask value, class name\) pairs, e.g. --config.dataset.classes="),
    ({'dataset.classes': ((0, 'background'), (255,))}, r"dataset.classes=.* must be \(mask value, class name\) pairs"),
    ({'half_precision': None}, r'half_precision=None must be True or False'),
    ({'frem.redraw': 'batch'}, r"frem.redraw='batch' must be one of \('epoch', 'step'\)"),
    ({'frem.redraw': 'step', 'frem.mode': 'fixed'},
     r"frem.redraw='step' needs frem.mode='random' \(frem.mode='fixed' keeps one set of channels"),
]


@pytest.mark.parametrize('overrides,message', BAD)
def test_bad_value_is_named(overrides, message):
  with pytest.raises(UserError, match=message) as info:
    validate_config(tiny_config(**overrides))
  assert '\n' not in str(info.value)


@pytest.mark.parametrize('overrides,message', BAD[:3])
def test_bad_value_leaves_the_workdir_untouched(overrides, message, tmp_path):
  workdir = tmp_path / 'run'
  with pytest.raises(UserError, match=message):
    train.train_and_evaluate(tiny_config(**overrides), str(workdir))
  assert not workdir.exists()


def test_default_and_demo_configs_are_valid():
  from configs import demo  # pylint: disable=g-import-not-at-top
  validate_config(default.get_config())
  validate_config(demo.get_config())


def test_unknown_key_in_a_config_file_is_an_error():
  config = default.get_config()
  with pytest.raises(AttributeError, match='num_selectd'):
    config.frem.num_selectd = 3
