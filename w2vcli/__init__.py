"""w2vcli: wav2vec 2.0 pretraining, CTC fine-tuning, transcription and scoring from the shell."""

__version__ = "0.1.0"
