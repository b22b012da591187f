"""Fine-tune MoViNet video classifiers with Keras 3 and tf.distribute."""
