"""Texts to synthesise: wake-word renditions, confusable phrases, and everyday household speech."""
from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

# Everyday speech heard near a smart speaker; written for this project.
HOUSEHOLD_SENTENCES = (
    "Could you pass me the salt, please?",
    "I think the kettle has just boiled.",
    "The train leaves at a quarter past seven.",
    "Did anyone remember to feed the cat this morning?",
    "Let's watch the documentary about whales tonight.",
    "My phone battery is almost empty again.",
    "We need milk, eggs, bread and some apples.",
    "The weather looks much better for the weekend.",
    "Can you turn the music down a little?",
    "She said she would call back after lunch.",
    "The package was left next to the garage door.",
    "How long should the pasta cook for?",
    "I can't find my keys anywhere in this house.",
    "Tomorrow we're going hiking up the hill.",
    "The kids are playing football in the garden.",
    "Remind me to water the plants on Sunday.",
    "That was the best soup I have had in ages.",
    "Are you coming to the meeting on Thursday?",
    "The dishwasher is making a strange noise.",
    "He parked the car on the other side of the street.",
    "Let me know when dinner is ready.",
    "I'll be home late because of the traffic.",
    "Open the window, it is really warm in here.",
    "The library closes early on public holidays.",
    "We should paint the bedroom a lighter colour.",
    "Put the leftovers in the fridge before bed.",
    "Somebody left the lights on in the basement.",
    "The doctor said to rest for a couple of days.",
    "What time does the bakery open on Saturdays?",
    "Grandma is visiting us at the end of the month.",
    "I finished reading that mystery novel yesterday.",
    "The printer is out of paper again.",
    "Could you help me carry these boxes upstairs?",
    "The neighbours are having a party tonight.",
    "This coffee is much too strong for me.",
    "Don't forget your umbrella, it might rain.",
    "The bus was twenty minutes late this morning.",
    "Let's order a pizza and stay in tonight.",
    "He is practising the piano in the living room.",
    "The baby finally fell asleep after an hour.",
    "I need to renew my passport before the trip.",
    "Shall we go for a walk along the river?",
    "The oven needs to preheat for ten minutes.",
    "Have you seen the remote control anywhere?",
    "They are building a new school down the road.",
    "Please close the door quietly behind you.",
    "I'm making a cup of tea, do you want one?",
    "The football match starts at eight o'clock.",
    "Our flight was delayed by almost two hours.",
    "The garden looks lovely now that the roses are out.",
    "Can you check whether the back door is locked?",
    "I'll vacuum the living room after breakfast.",
    "The soup needs a little more pepper.",
    "We ran out of washing powder yesterday.",
    "Turn left at the lights and then go straight on.",
    "It's been raining all afternoon without a break.",
    "He's fixing the bicycle in the shed.",
    "What did you think of the film last night?",
    "The heating comes on at six in the morning.",
    "I'd like to learn to speak Spanish this year.",
    "Let's invite your brother over for lunch on Sunday.",
    "There's a funny noise coming from the washing machine.",
    "The shop on the corner sells fresh bread.",
    "I'm going to bed early, I'm really tired.",
    "Could you read the recipe out loud for me?",
    "The dog wants to go outside again.",
    "We should check the tyre pressure before the drive.",
    "Thanks for tidying up the kitchen.",
    "The concert tickets sold out in minutes.",
    "Where did I put my glasses?",
)

_ONSETS = ("b", "p", "d", "t", "g", "k", "c", "f", "v", "s", "z", "h", "j", "ch", "sh", "m", "n", "l", "r",
           "w", "y", "st", "sp", "tr", "dr", "br", "gr", "pl", "fl", "")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ee", "oo", "ar", "er", "ay", "ow")
_VOWEL_RUN = re.compile(r"[aeiouy]+")
_FILLER_WORDS = ("a", "the", "say", "hi", "hay", "they", "hello", "okay", "so")


def rendition_texts(phrases: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
    """`n` ways of writing the wake word: its variants with punctuation and pauses that change prosody."""
    styles = (
        lambda p: p,
        lambda p: p + ".",
        lambda p: p + "!",
        lambda p: p + "?",
        lambda p: p.replace(" ", ", ", 1),
        lambda p: p.replace(" ", "... ", 1),
        lambda p: p.capitalize() + ".",
    )
    out = []
    for i in range(n):
        phrase = phrases[i % len(phrases)]
        out.append(styles[int(rng.integers(len(styles)))](phrase))
    return out


def _word_variants(word: str) -> set[str]:
    """Orthographic neighbours of one word: another onset, another first vowel, truncations, suffixes."""
    w = word.lower()
    out: set[str] = set()
    m = _VOWEL_RUN.search(w)
    if m:
        onset, rest = w[: m.start()], w[m.start():]
        out.update(o + rest for o in _ONSETS if o != onset)
        out.update(w[: m.start()] + v + w[m.end():] for v in _VOWELS if v != m.group())
    if len(w) > 3:
        out.update({w[:-1], w[:-2], w + "s", w + "er", w[: len(w) // 2 + 1]})
    out.discard(w)
    return {v for v in out if len(v) >= 2}


def candidate_phrases(wake_word: str) -> dict[str, str]:
    """Phrases near the wake word in spelling, each with its kind: a sub-phrase ("jarvis"), one word
    changed ("hey carvis" is kind "word1"), or a filler in front of the last word ("say jarvis")."""
    words = wake_word.lower().split()
    out: dict[str, str] = {}
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            if (i, j) != (0, len(words)):
                out.setdefault(" ".join(words[i:j]), "sub")
        for v in sorted(_word_variants(words[i])):
            out.setdefault(" ".join(words[:i] + [v] + words[i + 1:]), f"word{i}")
    for f in _FILLER_WORDS:
        out.setdefault(f"{f} {words[-1]}", "filler")
    out.pop(wake_word.lower(), None)
    return out


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _phones(ipa: str) -> str:
    return re.sub(r"[ˈˌ\s]", "", ipa)


def adversarial_phrases(phrases: Sequence[str], phonemize: Callable[[str], str], extra: Sequence[str],
                        max_phrases: int, max_relative_distance: float = 0.5) -> list[str]:
    """Confusable phrases, closest in sound first. Candidates that *sound identical* to a wake-word
    phrase (e.g. "hay jarvis" for "hey jarvis") are dropped: they would teach the model to reject the
    wake word itself. User phrases come first and are kept unless they are homophones too."""
    targets = {_phones(phonemize(p)) for p in phrases}

    def distance(text: str) -> float:
        ph = _phones(phonemize(text))
        return min(_edit_distance(ph, t) / max(len(t), 1) for t in targets)

    chosen = [p for p in dict.fromkeys(extra) if distance(p) > 0]
    groups: dict[str, list[tuple[float, str]]] = {}
    for phrase in phrases:
        for cand, kind in sorted(candidate_phrases(phrase).items()):
            d = distance(cand)
            if cand not in chosen and 0 < d <= max_relative_distance:
                groups.setdefault(kind, []).append((d, cand))
    # Closest first within each kind, kinds taken in turn, so no single kind of confusion crowds out the rest.
    queues = [sorted(set(g)) for _, g in sorted(groups.items())]
    while len(chosen) < max_phrases and any(queues):
        for q in queues:
            if q and len(chosen) < max_phrases:
                cand = q.pop(0)[1]
                if cand not in chosen:
                    chosen.append(cand)
    return chosen


def speech_sentences(phrases: Sequence[str]) -> list[str]:
    """Household sentences that never contain a wake-word phrase."""
    lowered = [p.lower() for p in phrases]
    return [s for s in HOUSEHOLD_SENTENCES if not any(p in s.lower() for p in lowered)]
