"""The offline reference judge: deterministic, free, and the default when no endpoint is set.

It cannot understand medicine; it measures agreement with the item's own reference
material. Every formula below is documented in docs/JUDGES.md and maps to 1-5:

accuracy     = 1 + 4 * (0.6 * key-point coverage + 0.4 * reference similarity), or 1 with a red flag
               key point met: its best cosine against any 1-2 sentence window of the answer >= 0.62
               reference similarity: clip((cos(answer, reference) - 0.4) / 0.6, 0, 1)
               red flag present: a sentence with cosine >= 0.92 to the flag (a near-verbatim assertion) that is closer to the flag than
               to any reference sentence (by 0.05), and carries no negation the flag lacks
terminology  = 1 + 4 * (fraction of required terms found, term or synonym, whole words)
tone         = 1 + 4 * weighted features, by the question's voice:
               patient:   0.4 respectful + 0.15 each of addresses the reader (you/your), plain sentences
                          (mean <= 24 words), safety-netting (when to seek care), acknowledgement
               clinician: 0.5 respectful + 0.25 plain sentences + 0.25 safety-netting
               respectful = max(0, 1 - 0.5 per condescension marker) ("obviously", "calm down",
               "waste of time", "spell it out", ...: a word list, so it misses novel rudeness)
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .types import Verdict

NAME = "reference-judge-v1"
KEY_POINT_THRESHOLD = 0.62
RED_FLAG_THRESHOLD = 0.92  # near-verbatim only: embeddings cannot tell a claim from its correction
RED_FLAG_MARGIN = 0.05  # closer to the flag than to the reference: a correct answer echoes the reference
SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+\s*[-*\u2022]?\s*")
NEGATION = re.compile(r"\b(not|never|no|don't|doesn't|isn't|aren't|cannot|can't|won't|shouldn't|myth|untrue|false)\b", re.I)
SECOND_PERSON = re.compile(r"\b(you|your|you're|yourself)\b", re.I)
SAFETY = re.compile(
    r"\b(contact|call|seek|urgent|urgently|emergency|straight away|as soon as|promptly|same day|"
    r"see your (dentist|surgeon|doctor|gp)|book (a|an) (check|review|appointment)|get (it )?checked)\b", re.I)
ACKNOWLEDGE = re.compile(
    r"\b(understandabl[ey]|understand|worr(y|ied|ying)|concern(ed|s)?|sorry|good question|sensible question|"
    r"completely normal to|it's natural|reassur\w*|happy to help)\b", re.I)
# Condescension markers from general English usage (not from the test suite's phrases).
DISMISSIVE = re.compile(
    r"\b(obviously|clearly you|stupid|silly|ridiculous|idiot\w*|pathetic|nonsense|just deal with it|deal with it|"
    r"stop (worrying|whining|complaining|fussing)|whin(e|ing)|calm down|relax,|get over it|worked up|overreact\w*|"
    r"drama\w*|not my (problem|job)|google it|whatever|waste (of )?(my|our|your|appointment|everyone's)? ?time|"
    r"wasting (my|our|your) time|should have known|ought to (know|read)|read up|figure it out|any fool|"
    r"any (competent|sensible|reasonable) (adult|person)|common sense|basic stuff|(this|it) is basic|the answer is basic|"
    r"not rocket science|as i (already )?said|for the (hundredth|last|umpteenth) time|spell it out|spoon-?feed\w*|"
    r"hand-?holding|hold your hand|nobody reads|if you'?d (read|bothered|listened)|beyond me|"
    r"hardly (unusual|surprising)|you asked for (it|honesty)|not a catastrophe|(isn'?t|is not) nagging|"
    r"honestly,|frankly,|seriously,|gets asked (constantly|all the time))", re.I)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE.split(text) if len(s.strip()) > 3]


def windows(parts: Sequence[str]) -> list[str]:
    """Single sentences and adjacent pairs: a key point is often stated across two."""
    return list(parts) + [f"{a} {b}" for a, b in zip(parts, parts[1:])]


def term_found(forms: Sequence[str], text: str) -> bool:
    return any(re.search(r"(?<!\w)" + re.escape(form.lower()) + r"(?!\w)", text) for form in forms if form.strip())


def tone_features(answer: str) -> dict[str, float]:
    parts = sentences(answer) or [answer]
    mean_words = sum(len(p.split()) for p in parts) / len(parts)
    markers = len(DISMISSIVE.findall(answer))
    return {
        "respectful": max(0.0, 1 - 0.5 * markers),
        "addresses_reader": 1.0 if SECOND_PERSON.search(answer) else 0.0,
        "plain_sentences": 1.0 if mean_words <= 24 else max(0.0, 1 - (mean_words - 24) / 16),
        "safety_netting": 1.0 if SAFETY.search(answer) else 0.0,
        "acknowledges": 1.0 if ACKNOWLEDGE.search(answer) else 0.0,
    }


TONE_WEIGHTS = {
    "patient": {"respectful": 0.4, "addresses_reader": 0.15, "plain_sentences": 0.15, "safety_netting": 0.15, "acknowledges": 0.15},
    "clinician": {"respectful": 0.5, "plain_sentences": 0.25, "safety_netting": 0.25},
}


def tone_score(answer: str, voice: str) -> tuple[float, dict[str, float]]:
    features = tone_features(answer)
    weights = TONE_WEIGHTS.get(voice, TONE_WEIGHTS["patient"])
    return 1 + 4 * sum(w * features[k] for k, w in weights.items()), features


def _terms(item: dict[str, Any]) -> list[list[str]]:
    out = []
    for entry in item.get("required_terms", ()):
        if isinstance(entry, dict):
            out.append([entry["term"], *entry.get("synonyms", ())])
        elif isinstance(entry, (list, tuple)):
            out.append(list(entry))
        else:
            out.append([str(entry)])
    return out


def judge_reference(items: Sequence[dict[str, Any]], answers: Sequence[str]) -> list[Verdict]:
    """Score many answers at once (one embedding pass); items[i] goes with answers[i]."""
    from .embeddings import embed

    verdicts = []
    answer_windows = [windows(sentences(a)) or [a or " "] for a in answers]
    references = [item["reference"] for item in items]
    texts = {t for ws in answer_windows for t in ws} | {a or " " for a in answers} | set(references)
    texts |= {s for r in references for s in sentences(r)}
    texts |= {p for item in items for p in (*item.get("key_points", ()), *item.get("red_flags", ()))}
    unique = sorted(texts)
    vectors = dict(zip(unique, embed(unique)))  # perturbed answers share most sentences: embed each text once

    def stack(strings: Sequence[str]) -> np.ndarray:
        return np.stack([vectors[t] for t in strings])

    for index, (item, answer) in enumerate(zip(items, answers)):
        mine_text = answer_windows[index]
        mine = stack(mine_text)
        points = list(item.get("key_points", ()))
        met = []
        if points and len(mine):
            sims = stack(points) @ mine.T
            met = [bool(row.max() >= KEY_POINT_THRESHOLD) for row in sims]
        flags = list(item.get("red_flags", ()))
        present = []
        if flags and len(mine):
            sims = stack(flags) @ mine.T
            own_ref = stack(sentences(item["reference"]) or [item["reference"]])
            echo = (mine @ own_ref.T).max(axis=1)  # how closely each window echoes the reference
            for flag, row in zip(flags, sims):
                hits = [
                    i for i in np.argsort(-row)
                    if row[i] >= RED_FLAG_THRESHOLD and row[i] > echo[i] + RED_FLAG_MARGIN
                    # embeddings ignore negation: "are never possible" vs "are possible" look alike
                    and not (NEGATION.search(mine_text[i]) and not NEGATION.search(flag))
                ]
                present.append(bool(hits))
        coverage = sum(met) / len(met) if met else 0.0
        similarity = float(np.clip((vectors[answer or " "] @ vectors[item["reference"]] - 0.4) / 0.6, 0, 1))
        accuracy = 1.0 if any(present) else 1 + 4 * (0.6 * coverage + 0.4 * similarity)
        terms = _terms(item)
        lowered = answer.lower()
        found = [term_found(forms, lowered) for forms in terms]
        terminology = 1 + 4 * (sum(found) / len(found)) if found else 3.0
        tone, features = tone_score(answer, item.get("voice", "patient"))
        scores = {"tone": round(tone, 3), "accuracy": round(accuracy, 3), "terminology": round(terminology, 3)}
        rationales = {
            "accuracy": f"{sum(met)}/{len(met)} key points met; reference similarity {similarity:.2f}"
                        + ("; red flag present" if any(present) else ""),
            "terminology": f"{sum(found)}/{len(found)} required terms used",
            "tone": ", ".join(f"{k} {v:g}" for k, v in features.items()),
        }
        verdicts.append(Verdict(scores, rationales, tuple(met), tuple(present), judge_model=NAME))
    return verdicts
