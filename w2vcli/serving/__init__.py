"""Long-lived processes: `w2v serve` (app.py routes, schemas.py shapes, errors.py refusals, audio.py
uploads decoded in memory, batcher.py the model's owner and queue, server.py start/stop) and
`w2v listen` (its stream loop and voice activity detection). The CLI only starts them."""
