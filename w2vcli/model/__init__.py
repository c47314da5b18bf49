"""The wav2vec 2.0 model: feature_encoder -> transformer; quantizer; heads in wav2vec2."""

from w2vcli.model.wav2vec2 import (
    BackboneOutput,
    PretrainingOutput,
    Wav2Vec2ForCTC,
    Wav2Vec2ForPreTraining,
    Wav2Vec2Model,
)

__all__ = ["BackboneOutput", "PretrainingOutput", "Wav2Vec2ForCTC", "Wav2Vec2ForPreTraining", "Wav2Vec2Model"]
