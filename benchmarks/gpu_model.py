"""A Mistral-7B-architecture model with random weights and a local tokenizer, for the GPU
benchmarks (no hub on the GPU machine). Imports only torch/transformers/tokenizers, so a
benchmark can use it without pulling in the harness."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Mistral-Instruct's [INST] format, enough for render_prompt's chat_template path
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}</s>{% endif %}"
    "{% endfor %}"
)


def mistral_config(tiny: bool) -> Any:
    from transformers import MistralConfig

    if tiny:
        return MistralConfig(vocab_size=32000, hidden_size=256, intermediate_size=896, num_hidden_layers=2,
                             num_attention_heads=8, num_key_value_heads=2)
    return MistralConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                         rope_theta=10000.0, sliding_window=4096)


def corpus() -> list[str]:
    texts = []
    for path in [REPO / "prompts" / "dental_implant_v1.jsonl", *sorted((REPO / "data").glob("*.jsonl"))]:
        for line in path.read_text().splitlines():
            if line.strip():
                texts += [v for v in json.loads(line).values() if isinstance(v, str) and len(v) > 20]
    return texts


def build_tokenizer(folder: Path, vocab: int) -> None:
    """Byte-level BPE trained on the project's text, filled up to `vocab` ids so every id decodes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    trained = tok.get_vocab_size()
    if trained < vocab:
        tok.add_tokens([f"<x{i}>" for i in range(vocab - trained)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    print(f"tokenizer: {trained} BPE ids trained, filled to {len(fast)}")
