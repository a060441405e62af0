"""Models: loading (dtype, device, LoRA/QLoRA), named chat templates, the tiny-model builder."""
