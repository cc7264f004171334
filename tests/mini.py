"""The miniature smoke run that the end-to-end tests share.

A small generated world (120 training, 30 dev and 30 test items per file, 600 corpus sentences),
10 pre-training steps and a few fine-tuning steps, no shuffled-label controls. Each test adds the
overrides it exercises; a later override of the same key wins, so a test may also change one of
these."""

WORLD = ["smoke.n_train=120", "smoke.n_dev=30", "smoke.n_test=30", "smoke.n_corpus=600"]

MINI = WORLD + [
    "pretrain.steps=10",
    "intermediate.train.max_steps=6",
    "intermediate.train.eval_every_steps=3",
    "target.train.max_steps=4",
    "target.train.eval_every_steps=4",
    "controls=[]",
]

# the commonest end to end: XNLI as the target (test split) and Tatoeba from the encoder
XNLI_TATOEBA = MINI + [
    "target.tasks=[xnli]",
    "retrieval.tasks=[tatoeba]",
    "target.per_task={}",
    "target.eval_splits=[test]",
]
