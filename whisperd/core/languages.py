"""Whisper's languages: ISO-639-1 codes, their English names, and one normalizer.

The table is a copy of openai-whisper's `whisper.tokenizer.LANGUAGES` (100
entries, "yue" included) so the HTTP shim can check a `language` field without
importing whisper or torch. `verbose_json` reports the full lower-case name.
"""

from __future__ import annotations

from whisperd.core.errors import InvalidParameter

# Order follows whisper's table (its token order); do not sort.
LANGUAGES = {
    "en": "english",
    "zh": "chinese",
    "de": "german",
    "es": "spanish",
    "ru": "russian",
    "ko": "korean",
    "fr": "french",
    "ja": "japanese",
    "pt": "portuguese",
    "tr": "turkish",
    "pl": "polish",
    "ca": "catalan",
    "nl": "dutch",
    "ar": "arabic",
    "sv": "swedish",
    "it": "italian",
    "id": "indonesian",
    "hi": "hindi",
    "fi": "finnish",
    "vi": "vietnamese",
    "he": "hebrew",
    "uk": "ukrainian",
    "el": "greek",
    "ms": "malay",
    "cs": "czech",
    "ro": "romanian",
    "da": "danish",
    "hu": "hungarian",
    "ta": "tamil",
    "no": "norwegian",
    "th": "thai",
    "ur": "urdu",
    "hr": "croatian",
    "bg": "bulgarian",
    "lt": "lithuanian",
    "la": "latin",
    "mi": "maori",
    "ml": "malayalam",
    "cy": "welsh",
    "sk": "slovak",
    "te": "telugu",
    "fa": "persian",
    "lv": "latvian",
    "bn": "bengali",
    "sr": "serbian",
    "az": "azerbaijani",
    "sl": "slovenian",
    "kn": "kannada",
    "et": "estonian",
    "mk": "macedonian",
    "br": "breton",
    "eu": "basque",
    "is": "icelandic",
    "hy": "armenian",
    "ne": "nepali",
    "mn": "mongolian",
    "bs": "bosnian",
    "kk": "kazakh",
    "sq": "albanian",
    "sw": "swahili",
    "gl": "galician",
    "mr": "marathi",
    "pa": "punjabi",
    "si": "sinhala",
    "km": "khmer",
    "sn": "shona",
    "yo": "yoruba",
    "so": "somali",
    "af": "afrikaans",
    "oc": "occitan",
    "ka": "georgian",
    "be": "belarusian",
    "tg": "tajik",
    "sd": "sindhi",
    "gu": "gujarati",
    "am": "amharic",
    "yi": "yiddish",
    "lo": "lao",
    "uz": "uzbek",
    "fo": "faroese",
    "ht": "haitian creole",
    "ps": "pashto",
    "tk": "turkmen",
    "nn": "nynorsk",
    "mt": "maltese",
    "sa": "sanskrit",
    "lb": "luxembourgish",
    "my": "myanmar",
    "bo": "tibetan",
    "tl": "tagalog",
    "mg": "malagasy",
    "as": "assamese",
    "tt": "tatar",
    "haw": "hawaiian",
    "ln": "lingala",
    "ha": "hausa",
    "ba": "bashkir",
    "jw": "javanese",
    "su": "sundanese",
    "yue": "cantonese",
}

# Name → code, with the aliases whisper itself accepts.
TO_LANGUAGE_CODE = {
    **{name: code for code, name in LANGUAGES.items()},
    "burmese": "my",
    "valencian": "ca",
    "flemish": "nl",
    "haitian": "ht",
    "letzeburgesch": "lb",
    "pushto": "ps",
    "panjabi": "pa",
    "moldavian": "ro",
    "moldovan": "ro",
    "sinhalese": "si",
    "castilian": "es",
    "mandarin": "zh",
}


def language_name(code: str) -> str:
    """The lower-case English name of a code ("en" → "english"); unknown codes pass through.

    Used when rendering a result, where failing over an odd engine code would
    lose a finished transcription.
    """
    return LANGUAGES.get(code.strip().lower(), code)


def normalize_language(value: str) -> str:
    """A code ("en", " EN "), a locale tag ("en-US", "pt_BR") or a name ("English",
    "castilian") → its code.

    Locale tags are what browsers and home-assistant style clients hold; Whisper
    knows languages, not regions, so the region is dropped.
    Raises InvalidParameter(param="language") for anything else.
    """
    key = value.strip().lower() if isinstance(value, str) else ""
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    primary, sep, _region = key.replace("_", "-").partition("-")
    if sep and primary in LANGUAGES:
        return primary
    shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
    raise InvalidParameter(
        f'Unsupported language {shown!r}: it must be an ISO-639-1 code like "en" '
        f'(or a language name like "english").',
        param="language",
    )
