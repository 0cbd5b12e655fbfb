"""Extra networks: LoRA files from models/Lora, activated by `<lora:name:weight>` prompt tags."""

from .apply import ActivatedNetworks, activated_loras, lora_multipliers, lora_tags, prompt_networks
from .lora import LoraError, LoraFile, LoraLibrary, LoraNetwork, library_for_flags, parse_state_dict, shared_library

__all__ = [
    "ActivatedNetworks", "LoraError", "LoraFile", "LoraLibrary", "LoraNetwork", "activated_loras",
    "library_for_flags", "lora_multipliers", "lora_tags", "parse_state_dict", "prompt_networks", "shared_library",
]
