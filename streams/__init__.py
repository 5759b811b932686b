"""The service around the model: settings, the embed-and-score pipeline, the batch tagger, the
streaming worker, Kafka helpers, the store, the workbench and the command line."""
