"""The espeak-ng languages and voice variants that the pinned espeakng-loader wheel ships (requirements.lock),
committed so that a config validates the same on every machine, espeak-ng installed or not.

Data, not code: the names of the files under the wheel's espeak-ng-data/lang (lower-cased, as espeak-ng matches
them) and espeak-ng-data/voices/!v. tests/unit/test_config_concerns.py checks them against the installed wheel, so
a lock bump that changes them fails there until this file is updated.
"""
from __future__ import annotations

ESPEAKNG_LOADER_VERSION = "0.2.4"

LANGUAGES: frozenset[str] = frozenset({
    "af", "am", "an", "ar", "as", "az", "ba", "be", "bg", "bn", "bpy", "bs", "ca", "ca-ba", "ca-nw", "ca-va",
    "chr", "cmn", "cmn-latn-pinyin", "cs", "cv", "cy", "da", "de", "el", "en", "en-029", "en-gb-scotland",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp", "en-shaw", "en-us", "en-us-nyc", "eo", "es", "es-419",
    "et", "eu", "fa", "fa-latn", "fi", "fo", "fr", "fr-be", "fr-ch", "ga", "gd", "gn", "grc", "gu", "hak",
    "haw", "he", "hi", "hr", "ht", "hu", "hy", "hyw", "ia", "id", "io", "is", "it", "ja", "jbo", "ka", "kaa",
    "kk", "kl", "kn", "ko", "kok", "ku", "ky", "la", "lb", "lfn", "lt", "ltg", "lv", "mi", "mk", "ml", "mr",
    "ms", "mt", "mto", "my", "nb", "nci", "ne", "nl", "nog", "om", "or", "pa", "pap", "piqd", "pl", "pt",
    "pt-br", "py", "qdb", "qu", "quc", "qya", "ro", "ru", "ru-cl", "ru-lv", "sd", "shn", "si", "sjn", "sk",
    "sl", "smj", "sq", "sr", "sv", "sw", "ta", "te", "th", "ti", "tk", "tn", "tr", "tt", "ug", "uk", "ur", "uz",
    "vi", "vi-vn-x-central", "vi-vn-x-south", "xex", "yue", "yue-latn-jyutping"
})

VARIANTS: frozenset[str] = frozenset({
    "adam", "Alex", "Alicia", "Andrea", "Andy", "anika", "anikaRobot", "Annie", "announcer", "antonio",
    "AnxiousAndy", "aunty", "belinda", "benjamin", "boris", "caleb", "croak", "david", "Demonic", "Denis",
    "Diogo", "ed", "edward", "edward2", "f1", "f2", "f3", "f4", "f5", "fast", "Gene", "Gene2", "grandma",
    "grandpa", "gustave", "Henrique", "Hugo", "ian", "iven", "iven2", "iven3", "iven4", "Jacky", "john",
    "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "Lee", "linda", "m1", "m2", "m3",
    "m4", "m5", "m6", "m7", "m8", "marcelo", "Marco", "Mario", "max", "Michael", "michel", "miguel", "Mike",
    "mike2", "Mr serious", "Nguyen", "norbert", "pablo", "paul", "pedro", "quincy", "Reed", "RicishayMax",
    "RicishayMax2", "RicishayMax3", "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4",
    "robosoft5", "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby", "steph", "steph2", "steph3",
    "Storm", "travis", "Tweaky", "UniRobot", "victor", "whisper", "whisperf", "zac"
})
