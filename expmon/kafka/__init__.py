"""Kafka administration (topics) for every verb."""
