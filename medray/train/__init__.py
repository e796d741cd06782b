"""Training: continual pretraining, mid-training (SFT) and the data formats they read.

SFT data moves in one direction, one module per step: `chat_format` turns
a chat into token ids and labels (the loss on assistant turns only),
`cot` makes structured chain of thought a target format of its own,
`sft_data` does both over Arrow batches and pads them into tensors, and
`mixture` decides, step by step, how many samples each source gives.
"""
