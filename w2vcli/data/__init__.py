"""Data: audio, manifests, batching, the training loader, chunking, inputs and transcripts, text."""
