"""Experience Monitor: Kafka-native, real-time monitor of the e-commerce customer experience."""

__version__ = "0.5.0"
