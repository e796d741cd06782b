"""Models: causal LMs and the vision-language model, their freezing policies and Hugging Face I/O."""
