"""Tooling around the encoder, apart from the runtime: training a TopK SAE on a model's
activations (``saewatch train-sae``), labelling its features from corpus activations
(``saewatch label-features``), encoding files of events (``saewatch encode-file``) and the
AlpacaEval training corpus with its held-out split. The daemon never imports this package.
"""
