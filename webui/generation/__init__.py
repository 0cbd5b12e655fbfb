"""The generation backend: conditioning, samplers, seeds, the denoising loop, txt2img."""
