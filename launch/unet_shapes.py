"""The paper U-Net's layer shapes, for the layer-by-layer benchmarks (bench_conv_layers.py, and
bench_torch_conv_layers.py, which runs in the PyTorch peer's venv): plain Python, no JAX or torch."""


def model_convs(features, image_size):
  """[(resolution, c_in, c_out, count)] of the U-Net+SE's 3x3 convolutions (1 input channel)."""
  shapes = {}
  def add(res, ci, co):
    shapes[(res, ci, co)] = shapes.get((res, ci, co), 0) + 1
  res, cin = image_size, 1
  for f in features:  # encoder stages and the deepest stage
    add(res, cin, f)
    add(res, f, f)
    cin, res = f, res // 2
  res = image_size // 2 ** (len(features) - 1)
  for f in reversed(features[:-1]):  # decoder: concat(up, skip) -> f, f -> f
    res *= 2
    add(res, 2 * f, f)
    add(res, f, f)
  return [(r, ci, co, n) for (r, ci, co), n in shapes.items()]


def model_upconvs(features, image_size):
  """[(input resolution, c_in, c_out, 1)] of the decoder's transposed convolutions."""
  res = image_size // 2 ** (len(features) - 1)
  out, cin = [], features[-1]
  for f in reversed(features[:-1]):
    out.append((res, cin, f, 1))
    cin, res = f, res * 2
  return out


def model_pools(features, image_size):
  """[(input resolution, c, c, 1)] of the encoder's max-pools."""
  return [(image_size // 2 ** i, f, f, 1) for i, f in enumerate(features[:-1])]
