"""Run Bridge: run-request events from Kafka become runs of data pipelines."""

__version__ = "0.1.0"
