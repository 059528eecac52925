"""Input pipelines (TFDS + tf.data) and the datasets that ship offline."""
