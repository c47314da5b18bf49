"""One public function per subcommand: prep, pretrain, finetune, transcribe, score."""
