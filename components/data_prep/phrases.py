"""Texts to synthesise: wake-word renditions, confusable phrases, and everyday household speech."""
from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

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


# Templates for varied everyday speech (questions, commands, numbers, names, times, conversation); written
# for this project. Each slot is filled from its list, so a few templates give thousands of sentences.
_SLOTS = {
    "name": ("Anna", "Ben", "Carlos", "Dana", "Emil", "Fatima", "George", "Hana", "Ivan", "Julia", "Kofi", "Lena",
             "Mateo", "Nora", "Oscar", "Priya", "Quentin", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wendy", "Yusuf"),
    "place": ("the station", "the office", "the supermarket", "the park", "school", "the airport", "the gym",
              "the dentist", "the beach", "the garage", "the library", "the market", "the hospital", "the cinema"),
    "time": ("at seven", "after lunch", "tomorrow morning", "on Friday", "next week", "at half past three",
             "tonight", "in ten minutes", "before dinner", "on the weekend", "at noon", "this evening"),
    "number": ("two", "three", "five", "eight", "eleven", "fifteen", "twenty", "forty two", "ninety",
               "a hundred", "seven hundred", "two thousand"),
    "thing": ("the blue jacket", "my laptop", "the shopping list", "the car keys", "a glass of water",
              "the newspaper", "the charger", "the red bag", "the spare towels", "the tickets", "the recipe book",
              "the ladder", "the photo album", "the tool box"),
    "room": ("kitchen", "bedroom", "hallway", "bathroom", "living room", "attic", "garden", "dining room",
             "study", "cellar"),
    "food": ("pancakes", "curry", "salad", "noodles", "soup", "roast potatoes", "fish", "rice", "sandwiches",
             "chocolate cake", "porridge", "tacos"),
    "digits": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "one two three",
               "four five six", "seven eight nine", "nine one one", "two zero two six", "five five five eight",
               "six three nine", "eight four", "zero seven one", "three three"),
    "verb": ("call", "visit", "meet", "help", "email", "text", "pick up", "wait for", "drive", "thank"),
}
_TEMPLATES = (
    "Did {name} say we are meeting {time}?",
    "Can you {verb} {name} {time}?",
    "I left {thing} in the {room}.",
    "We need {number} more chairs for the party.",
    "The bill came to {number} pounds and fifty pence.",
    "Let's have {food} {time}.",
    "{name} is on the way to {place}.",
    "Have you seen {thing} anywhere?",
    "Please bring {thing} to the {room}.",
    "It takes {number} minutes to walk to {place}.",
    "I promised to {verb} {name} {time}.",
    "The meeting at {place} was moved to {time}.",
    "Who finished the {food} in the fridge?",
    "My sister lives {number} miles from {place}.",
    "Could you turn off the light in the {room}?",
    "{name} and I are cooking {food} {time}.",
    "Is {place} open {time}?",
    "Room {number} is at the end of the corridor.",
    "Tell {name} that {thing} is in the {room}.",
    "Why is {thing} on the floor of the {room}?",
    "I'll {verb} you when I get to {place}.",
    "There were {number} people waiting at {place}.",
    "Hey {name}, have you got a minute?",
    "Hi {name}, how was {place}?",
    "Okay, so {name} is bringing {food}.",
    "Yes, {name}, the code is {digits}.",
    "My number is {digits}, call me {time}.",
    "No, I said {digits}, not {number}.",
    "What's the weather like at {place} {time}?",
    "Set a timer for {number} minutes.",
    "Play something relaxing in the {room}.",
    "And then {name} told me the whole story about {place}.",
    "Honestly, I think {food} is better than {thing}.",
    "Turn the volume down, {name} is asleep.",
    "Right, where did I put {thing}?",
    "The score was {number} to {digits}.",
    "Good evening, here are the headlines {time}.",
)


def _fill(templates: Sequence[str], slots: dict[str, Sequence[str]], n: int,
          rng: np.random.Generator) -> list[str]:
    """`n` distinct sentences: a drawn template with every slot drawn from its list (one draw per slot)."""
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n and attempts < n * 20:
        attempts += 1
        template = templates[int(rng.integers(len(templates)))]
        fields = {k: v[int(rng.integers(len(v)))] for k, v in slots.items()}
        text = template.format(**fields)
        text = text[0].upper() + text[1:]
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def generated_sentences(n: int, seed: int) -> list[str]:
    """`n` distinct sentences from the templates, in a seeded order (the same n and seed, the same list)."""
    return _fill(_TEMPLATES, _SLOTS, n, np.random.default_rng([seed, 424242]))


# Greetings open the way a "hey <name>" wake word does but name someone else (the sentences a model for "hey
# jarvis" fired on, measured 2026-12-03: "Hey Sam, have you got a minute?"). Written for this project.
_GREETING_OPENERS = ("Hey {name}", "Hi {name}", "Hello {name}", "Oh hey {name}", "Hey there {name}",
                     "Hey {name} and {name2}", "Hey you", "Hey", "Hey guys", "Morning {name}", "Hey, it's {name}",
                     "Hey hey {name}", "Okay {name}", "Hey mum", "Hey dad", "Excuse me {name}")
_GREETING_TAILS = ("have you got a minute?", "how was {place}?", "can you {verb} me {time}?", "dinner is ready.",
                   "where did you put {thing}?", "are you coming to {place}?", "look at this!",
                   "I left {thing} in the {room}.", "do you want {food}?", "it's me.", "over here!",
                   "what time is it?", "guess what happened at {place}.", "are you still there?",
                   "can you hear me?", "turn that down, please.", "")
_GREETING_NAMES = (*_SLOTS["name"], "Marvin", "Harvey", "Charlie", "Jasmine", "Martin", "Chelsea", "Darius", "Alice",
                   "Tobias", "Margaret", "Jacob", "Sophie", "Daniel", "Olivia", "Arthur", "Chloe", "Henry", "Isla",
                   "Leo", "Mia", "Noah", "Ruby", "Felix", "Zara")


def greeting_sentences(n: int, seed: int) -> list[str]:
    """`n` distinct greetings ("Hey Marvin, dinner is ready."), in a seeded order."""
    templates = [f"{o}, {t}" if t else f"{o}!" for o in _GREETING_OPENERS for t in _GREETING_TAILS]
    slots = {**_SLOTS, "name": _GREETING_NAMES, "name2": _GREETING_NAMES}
    return _fill(templates, slots, n, np.random.default_rng([seed, 434343]))


_VOWEL_PHONES = frozenset("aɑɒæəɐɛeɜɚɪiɨᵻoɔuʊʌAIOWYQ")  # misaki's and espeak-ng's vowels, diphthongs as one letter


def _phone_distance(a: str, b: str) -> float:
    """Edit distance between phone strings; one vowel for another costs half (vowels blur across accents)."""
    prev = [float(j) for j in range(len(b) + 1)]
    for i, ca in enumerate(a, 1):
        cur = [float(i)]
        for j, cb in enumerate(b, 1):
            sub = 0.0 if ca == cb else 0.5 if ca in _VOWEL_PHONES and cb in _VOWEL_PHONES else 1.0
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + sub))
        prev = cur
    return prev[-1]


def sound_alike_words(targets: Sequence[str], lexicon: Mapping[str, str], phonemize: Callable[[str], str],
                      per_target: int, max_relative_distance: float = 0.5, min_edits: float = 1.0) -> list[str]:
    """Real words of `lexicon` (word -> phonemes) that sound like each target word ("marvin", "harvest" for
    "jarvis"), closest first, `per_target` each. Words under `min_edits` away (one vowel: "Jervis") and words
    that contain a target are left out: an accent says them as the wake word, and they would teach the model to
    reject it."""
    flat = lambda ipa: _phones(ipa).replace("ɾ", "T")  # hibari's lexicon writes the flap as ɾ, its G2P as T
    spelled = [t.lower().replace(" ", "") for t in targets]
    candidates = [(word, flat(ipa)) for word, ipa in lexicon.items() if not any(t in word for t in spelled)]
    out: list[str] = []
    for tp in dict.fromkeys(flat(phonemize(t.lower())) for t in targets):
        scored = []
        for word, wp in candidates:
            if abs(len(wp) - len(tp)) > 2 or tp in wp:
                continue
            edits = _phone_distance(wp, tp)
            if edits >= min_edits and edits <= max_relative_distance * len(tp):
                scored.append((edits / max(len(tp), 1), word))
        out += [w for _, w in sorted(scored)[:per_target] if w not in out]
    return out


_CARRIERS = ("Did you say {name}?", "I said {name}, not the other one.", "{name}.", "Is that {name}?",
             "It's {name} again.", "Ask {name} about it.", "{name} is on the phone.")


# First names the lexicon lacks, scored beside its words (phonemes from the G2P): people are greeted by name.
SOUND_ALIKE_NAMES = ("Travis", "Davis", "Mavis", "Marvin", "Harvey", "Carlos", "Tariq", "Jarrod", "Garvey", "Chavez",
                     "Jervis", "Purvis", "Curtis", "Doris", "Boris", "Morris", "Maurice", "Francis", "Otis", "Alexis",
                     "Chester", "Charlotte", "Chuck", "Chad", "Jasper", "Jacques", "Javier", "Gervais", "Mathis",
                     "Nabil", "Naomi", "Nadia", "Bobby", "Robbie", "Toby", "Kobe", "Ruby", "Abu", "Nabu", "Nevis")


def sound_alike_sentences(words: Sequence[str], n: int, seed: int) -> list[str]:
    """`n` distinct sentences that greet or name a sound-alike word ("Hey Marvin, dinner is ready.",
    "Did you say harvest?"), in a seeded order."""
    if not words:
        return []
    openers = [o for o in _GREETING_OPENERS if "{name}" in o and "{name2}" not in o]
    templates = [f"{o}, {t}" if t else f"{o}!" for o in openers for t in _GREETING_TAILS] + list(_CARRIERS)
    names = [w[0].upper() + w[1:] for w in words]
    return _fill(templates, {**_SLOTS, "name": names}, n, np.random.default_rng([seed, 535353]))


def general_speech(phrases: Sequence[str], n_generated: int, seed: int) -> list[str]:
    """Household sentences plus generated ones, none containing a wake-word phrase."""
    lowered = [p.lower() for p in phrases]
    pool = list(HOUSEHOLD_SENTENCES) + generated_sentences(n_generated, seed)
    return [s for s in pool if not any(p in s.lower() for p in lowered)]


def heldout_texts(texts: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The texts only test speech may say: those whose seeded hash falls in the lowest `fraction` of the hash
    range, so a text's membership depends only on itself and the seed (stable as the list grows). At least one
    text is held out when there are two or more."""
    import hashlib

    if fraction <= 0 or len(texts) < 2:
        return set()
    def h(t: str) -> int:
        return int(hashlib.sha256(f"{seed}:{t}".encode()).hexdigest(), 16)
    limit = int(fraction * 2 ** 256)
    out = {t for t in texts if h(t) < limit}
    return out or {min(texts, key=h)}


# Other languages for the non-English speech condition (espeak-ng language code -> sentences); written for
# this project. Evaluation only: training never hears them.
NON_ENGLISH_SENTENCES = {
    "de": ("Kannst du bitte das Fenster schließen?", "Der Zug fährt um halb acht ab.",
           "Wir brauchen noch Milch und Brot.", "Morgen soll es den ganzen Tag regnen.",
           "Hast du meine Schlüssel gesehen?", "Das Essen ist gleich fertig.",
           "Ich rufe dich heute Abend noch einmal an.", "Die Kinder spielen im Garten."),
    "fr": ("Tu peux fermer la porte, s'il te plaît ?", "Le train part à sept heures et demie.",
           "Il faut acheter du pain et du lait.", "Demain il va pleuvoir toute la journée.",
           "As-tu vu mes clés quelque part ?", "Le dîner sera prêt dans dix minutes.",
           "Je te rappelle ce soir.", "Les enfants jouent dans le jardin."),
    "es": ("¿Puedes cerrar la ventana, por favor?", "El tren sale a las siete y media.",
           "Necesitamos leche y pan.", "Mañana va a llover todo el día.",
           "¿Has visto mis llaves?", "La cena estará lista en diez minutos.",
           "Te llamo otra vez esta noche.", "Los niños están jugando en el jardín."),
    "it": ("Puoi chiudere la finestra, per favore?", "Il treno parte alle sette e mezza.",
           "Abbiamo bisogno di latte e pane.", "Domani pioverà tutto il giorno.",
           "Hai visto le mie chiavi?", "La cena è pronta tra dieci minuti.",
           "Ti richiamo stasera.", "I bambini giocano in giardino."),
    "nl": ("Kun je het raam even dichtdoen?", "De trein vertrekt om half acht.",
           "We hebben melk en brood nodig.", "Morgen regent het de hele dag.",
           "Heb je mijn sleutels gezien?", "Het eten is over tien minuten klaar.",
           "Ik bel je vanavond nog terug.", "De kinderen spelen in de tuin."),
    "pl": ("Czy możesz zamknąć okno?", "Pociąg odjeżdża o wpół do ósmej.",
           "Potrzebujemy mleka i chleba.", "Jutro będzie padać cały dzień.",
           "Widziałeś moje klucze?", "Obiad będzie gotowy za dziesięć minut.",
           "Zadzwonię do ciebie wieczorem.", "Dzieci bawią się w ogrodzie."),
    "pt": ("Podes fechar a janela, por favor?", "O comboio parte às sete e meia.",
           "Precisamos de leite e pão.", "Amanhã vai chover o dia todo.",
           "Viste as minhas chaves?", "O jantar fica pronto em dez minutos."),
    "sv": ("Kan du stänga fönstret?", "Tåget går halv åtta.", "Vi behöver mjölk och bröd.",
           "I morgon regnar det hela dagen.", "Har du sett mina nycklar?", "Maten är klar om tio minuter."),
    "tr": ("Pencereyi kapatır mısın?", "Tren yedi buçukta kalkıyor.", "Süt ve ekmek almamız lazım.",
           "Yarın bütün gün yağmur yağacak.", "Anahtarlarımı gördün mü?", "Yemek on dakikaya hazır."),
    "id": ("Bisa tolong tutup jendelanya?", "Keretanya berangkat jam setengah delapan.",
           "Kita perlu susu dan roti.", "Besok hujan sepanjang hari.", "Kamu lihat kunciku?",
           "Makan malam siap sepuluh menit lagi."),
    "fi": ("Voisitko sulkea ikkunan?", "Juna lähtee puoli kahdeksalta.", "Tarvitsemme maitoa ja leipää.",
           "Huomenna sataa koko päivän.", "Oletko nähnyt avaimiani?", "Ruoka on valmista kymmenen minuutin päästä."),
    "ru": ("Закрой, пожалуйста, окно.", "Поезд отходит в половине восьмого.", "Нам нужны молоко и хлеб.",
           "Завтра весь день будет дождь.", "Ты не видел мои ключи?", "Ужин будет готов через десять минут."),
}
