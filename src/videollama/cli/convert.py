"""`videollama convert`: official Video-LLaMA files -> one model folder (config.json + safetensors + llm/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from videollama.checkpoint.mappings import SLOTS


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="convert the official checkpoint files into a videollama model folder",
                       description=__doc__)
    p.add_argument("--preset", default="videollama2-7b-finetuned",
                   help="architecture preset (see `--list-presets`); the LLM's own config.json overrides its LLM part")
    p.add_argument("--config", type=Path, help="a VideoLLaMAConfig YAML/JSON file instead of a preset")
    p.add_argument("--llm", type=Path, required=False, help="Hugging Face folder of LLaMA-2-chat / Vicuna (with tokenizer)")
    for slot in SLOTS.values():
        p.add_argument(slot.flag, type=Path, help=slot.description)
    p.add_argument("--no-audio", action="store_true", help="build the vision-language branch only")
    p.add_argument("--imagebind-vision", action="store_true",
                   help="also keep ImageBind's vision modality (needed only to train the audio branch the official way)")
    p.add_argument("--out", type=Path, required=False, help="output model folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--list-presets", action="store_true", help="print the preset names and exit")
    return p


def run(args: argparse.Namespace) -> int:
    from videollama.checkpoint.convert import convert_official
    from videollama.config import VideoLLaMAConfig, list_presets, load_preset
    from videollama.errors import ConfigError

    if args.list_presets:
        print("\n".join(list_presets()))
        return 0
    if args.llm is None or args.out is None:
        raise ConfigError("convert needs --llm and --out (see `videollama convert -h`)")
    if args.config is not None:
        config = (VideoLLaMAConfig.from_json(args.config) if args.config.suffix == ".json"
                  else VideoLLaMAConfig.from_yaml(args.config))
    else:
        config = load_preset(args.preset)
    if args.no_audio:
        config = config.replace(audio_encoder=None, audio_qformer=None)
    elif args.imagebind_vision and config.audio_encoder is not None and config.audio_encoder.vision is None:
        from dataclasses import replace

        from videollama.config import AudioEncoderConfig

        config = config.replace(audio_encoder=replace(config.audio_encoder, vision=AudioEncoderConfig().vision))
    sources = {name: getattr(args, slot.flag.lstrip("-")) for name, slot in SLOTS.items()
               if getattr(args, slot.flag.lstrip("-")) is not None}
    out = convert_official(args.out, config, sources, args.llm, overwrite=args.overwrite)
    print(f"wrote {out} (load it with VideoLLaMA.from_pretrained('{out}'))")
    return 0
