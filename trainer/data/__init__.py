"""Videos to TFRecord shards, and the tf.data pipeline that reads them back."""
