"""movinet-train with the CPU split into two logical devices (two replicas
for --strategy=mirrored on a machine without GPUs)."""

import tensorflow as tf

if __name__ == '__main__':
  cpu = tf.config.list_physical_devices('CPU')[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from trainer import main  # pylint: disable=import-outside-toplevel
  main.run()
