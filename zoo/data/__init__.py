"""Input, on grain without TensorFlow: classification over TFDS ArrayRecord or image folders (sources.py, pipeline.py,
transforms.py, randaugment.py), the in-memory tasks (arrays.py), and the datasets that ship offline."""
