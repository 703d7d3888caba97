"""The seed's training format, shared by data preparation and training.

One JSON object per line: {"prompt": "### Instruction:\\n<question>\\n\\n### Response:", "response": "<answer>"}.
"""
from __future__ import annotations

INSTRUCTION_TEMPLATE = "### Instruction:\n{question}\n\n### Response:"


def seed_row(question: str, response: str, **extra: object) -> dict[str, object]:
    return {"prompt": INSTRUCTION_TEMPLATE.format(question=question.strip()), "response": response.strip(), **extra}
