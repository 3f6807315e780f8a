"""G-stage: the generative recommender over Semantic IDs.

==============  ===============================================================
module          concept
==============  ===============================================================
config          ``GenerateConfig`` (section ``generate``)
model           ``SIDGenerator``: T5-style encoder-decoder over SID tokens
trie            ``SIDTrie``: prefix trie of the existing SIDs as tensor tables
beam            ``beam_search``: trie-constrained, batched over users and beams
data            sliding-window training examples, SID tokenization, batches
precision       float32 or bfloat16 matrix products
recommend       ranking many users and scoring the rankings (item-level hits)
trainer         ``GeneratorTrainer``: training, model selection, exact resume
stage           ``run_stage``: the pipeline's G-stage and its run-directory files
==============  ===============================================================
"""
