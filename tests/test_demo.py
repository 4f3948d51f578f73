"""The README's demo reaches a test mIoU well above chance (3 classes: chance is about 0.33 or less)."""

from configs import demo
from frem_jax import train


def test_demo_config_reaches_miou_above_0_6(tmp_path):
  results = train.train_and_evaluate(demo.get_config(), str(tmp_path / 'demo'))
  assert results['test']['miou'] >= 0.6
  assert all(v is not None and v > 0.4 for v in results['test']['iou_per_class'].values())
