"""Input: classification over TFDS with tf.data (pipeline.py), the in-memory tasks with grain (arrays.py), and the
datasets that ship offline."""
