"""Training: the tf.data input pipeline and the loop under tf.distribute."""
