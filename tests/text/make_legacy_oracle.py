"""Record transformers-4.28 slow `LlamaTokenizer` outputs as an oracle for `LegacyLlamaTokenizer`.

Not a test. Run it with a Python that has transformers==4.28.0, tokenizers==0.13.3 and sentencepiece
(e.g. a throw-away venv), never with the project venv:

    python tests/text/make_legacy_oracle.py /work/shared/fixtures/official/tiny-a/llama tests/text/data/legacy_oracle.json

It builds a few tokenizer folders from the given `tokenizer.model` (LLaMA-2 style: pad = unk; Vicuna-v0
style: an added `[PAD]` given as a plain string or as an AddedToken dict), adds `<ImageHere>`/`<AudioHere>`
like the official model, and stores encode (with/without BOS, with truncation) and decode results for
random strings and for the prompt shapes Video-LLaMA uses.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import transformers
from transformers import LlamaTokenizer

SPECIAL_DICT = {"lstrip": False, "normalized": True, "rstrip": False, "single_word": False}

VARIANTS = {
    "llama2_like": {
        "special_tokens_map": {
            "bos_token": {"content": "<s>", **SPECIAL_DICT},
            "eos_token": {"content": "</s>", **SPECIAL_DICT},
            "unk_token": {"content": "<unk>", **SPECIAL_DICT},
        },
        "tokenizer_config": {"add_bos_token": True, "add_eos_token": False, "tokenizer_class": "LlamaTokenizer"},
        "added_tokens": None,
    },
    "vicuna_v0_pad_str": {
        "special_tokens_map": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "[PAD]"},
        "tokenizer_config": {"tokenizer_class": "LlamaTokenizer"},
        "added_tokens": {"[PAD]": None},
    },
    "vicuna_v0_pad_dict": {
        "special_tokens_map": {
            "bos_token": {"content": "<s>", **SPECIAL_DICT},
            "eos_token": {"content": "</s>", **SPECIAL_DICT},
            "unk_token": {"content": "<unk>", **SPECIAL_DICT},
            "pad_token": {"content": "[PAD]", **SPECIAL_DICT},
        },
        "tokenizer_config": {"tokenizer_class": "LlamaTokenizer", "clean_up_tokenization_spaces": True},
        "added_tokens": {"[PAD]": None},
    },
}

ATOMS = [
    "<ImageHere>", "<AudioHere>", "<s>", "</s>", "<unk>", "[PAD]", "<Video>", "</Video>", "<Image>", "</Image>",
    "###", "Human:", "Assistant:", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", " ", "  ", "\n", "\n\n", "\t",
    "hello", "world", "The video", "What is the man doing?", ".", ",", "?", "a", "é", "中文", "🙂", "0.0, 1.2",
    "don't", " .", "'s", "Close your eyes", "                 ",
]

FIXED = [
    "", " ", "  ", "\n", "<s>", "</s>", "<ImageHere>", " <ImageHere> ", "a <ImageHere> b", "a\n<ImageHere>\nb",
    "<Video><ImageHere><ImageHere></Video> The video", "It is red. </s><s>[INST] What? [/INST] ",
    "[INST] <<SYS>>\n \n<</SYS>>\n\n<Video><ImageHere></Video> x [/INST] y </s>",
    "\n\n###Human: hi\n###Assistant: there\n###", "x <s> y </s> z <unk> w [PAD] v",
    "<ImageHere><AudioHere><ImageHere>", "  <AudioHere>  ", "<s><s></s>",
]


def make_folder(model: Path, spec: dict, root: Path, vocab: int) -> Path:
    folder = root / "tok"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    shutil.copy(model, folder / "tokenizer.model")
    (folder / "special_tokens_map.json").write_text(json.dumps(spec["special_tokens_map"]))
    (folder / "tokenizer_config.json").write_text(json.dumps(spec["tokenizer_config"]))
    if spec["added_tokens"]:
        added = {k: vocab + i for i, k in enumerate(spec["added_tokens"])}
        spec["added_tokens"] = added
        (folder / "added_tokens.json").write_text(json.dumps(added))
    return folder


def main() -> None:
    src = Path(sys.argv[1])
    out = Path(sys.argv[2])
    model = src / "tokenizer.model"
    rng = random.Random(1234)
    texts = list(FIXED)
    for _ in range(400):
        n = rng.randint(1, 12)
        texts.append("".join(rng.choice(ATOMS) for _ in range(n)))
    result = {
        "transformers_version": transformers.__version__,
        "tokenizer_model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "variants": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in VARIANTS.items():
            base = LlamaTokenizer.from_pretrained(str(src), use_fast=False)
            folder = make_folder(model, spec, Path(tmp), base.sp_model.get_piece_size())
            tok = LlamaTokenizer.from_pretrained(str(folder), use_fast=False)
            if tok.pad_token is None:
                tok.pad_token = tok.unk_token
            tok.add_tokens(["<ImageHere>"], special_tokens=True)
            tok.add_tokens(["<AudioHere>"], special_tokens=True)
            cases = []
            for text in texts:
                with_bos = tok(text).input_ids
                cases.append(
                    {
                        "text": text,
                        "with_bos": with_bos,
                        "without_bos": tok(text, add_special_tokens=False).input_ids,
                        "trunc8": tok(text, max_length=8, truncation=True).input_ids,
                        "decode": tok.decode(with_bos),
                    }
                )
            rand_ids = []
            for _ in range(100):
                ids = [rng.randrange(len(tok)) for _ in range(rng.randint(1, 20))]
                rand_ids.append({"ids": ids, "decode": tok.decode(ids)})
            result["variants"][name] = {
                "files": spec,
                "len": len(tok),
                "ids": {
                    "bos": tok.bos_token_id, "eos": tok.eos_token_id, "unk": tok.unk_token_id,
                    "pad": tok.pad_token_id, "image": tok.convert_tokens_to_ids("<ImageHere>"),
                    "audio": tok.convert_tokens_to_ids("<AudioHere>"),
                },
                "cases": cases,
                "decode_cases": rand_ids,
            }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=0))


if __name__ == "__main__":
    main()
