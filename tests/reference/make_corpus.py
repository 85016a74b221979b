#!/usr/bin/python3
"""Deterministic mixed-text corpus for tokenizer parity and benchmarks.

usage: make_corpus.py OUT.jsonl [MEGABYTES] [SEED]
Each line is one JSON string (a document). Mixes prose, source code, JSON, a dozen scripts, emoji
with ZWJ sequences, combining marks and other NFC traps, long digit runs, whitespace runs, CRLF,
special-token strings inside text, and ../shared/data prompts/answers when present (--shared DIR).
"""
import json
import random
import sys

out = sys.argv[1]
megabytes = float(sys.argv[2]) if len(sys.argv) > 2 else 5.5
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1234
R = random.Random(seed)

WORDS = ("the of and to in is was for that on as with by he it at from his an were are which this be or has "
         "had not but first one their its new after who they have her she two been other when there all also "
         "into school time during would more city world state may year can only most later about state government "
         "between some years family river over used team national such film known under where both through "
         "people then three many while these early before played university season until him them well city "
         "model token tokenizer distillation student teacher gradient learning function call argument result "
         "weather search file write read query json schema value error retry timeout").split()
CONTR = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D", "'M", "'ſ", "'x"]
SCRIPTS = {
    "cjk": [chr(c) for c in range(0x4E00, 0x4E00 + 3000)] + list("的一是不了人我在有他这为之大来以个中上们，。！？、"),
    "kana": [chr(c) for c in range(0x3041, 0x3097)] + [chr(c) for c in range(0x30A1, 0x30FB)],
    "hangul": [chr(c) for c in range(0xAC00, 0xAC00 + 2000)],
    "cyrillic": list("абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЭЮЯіїєґ"),
    "arabic": [chr(c) for c in range(0x0621, 0x064B)] + list("٠١٢٣٤٥٦٧٨٩،؟") + ["\u064E", "\u0650", "\u0651"],
    "devanagari": [chr(c) for c in range(0x0905, 0x0939)] + ["\u093E", "\u093F", "\u0940", "\u0947", "\u094D", "\u0902", "०", "१", "२"],
    "thai": [chr(c) for c in range(0x0E01, 0x0E2F)] + ["\u0E31", "\u0E34", "\u0E35", "\u0E48", "\u0E49", "๑", "๒"],
    "hebrew": [chr(c) for c in range(0x05D0, 0x05EB)] + ["\u05B0", "\u05B8", "\u05BC"],
    "greek": list("αβγδεζηθικλμνξοπρστυφχψωάέήίόύώΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩς"),
    "armenian": [chr(c) for c in range(0x0561, 0x0587)],
    "georgian": [chr(c) for c in range(0x10D0, 0x10F0)],
    "tamil": [chr(c) for c in range(0x0B85, 0x0BB9)] + ["\u0BCD", "\u0BBE", "\u0BC6"],
    "bengali": [chr(c) for c in range(0x0985, 0x09B9)] + ["\u09BE", "\u09C7", "\u09CD", "\u09D7"],
    "latin-ext": list("àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿœšžłńśźżőűăşţğİıßẞǅǈǋ"),
}
EMOJI = ["😀", "😂", "🤖", "🚀", "🎉", "👍", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "❤️", "✨", "🧑🏿‍🚀",
         "🫠", "👁️‍🗨️", "☕", "🐍", "🦀", "1️⃣", "#️⃣", "©️", "™"]
COMBINING = ["e\u0301", "a\u0308", "o\u0302\u0323", "a\u0301\u0328", "u\u0308\u0301", "n\u0303", "c\u0327",
             "A\u030A", "\u212B", "\u2126", "\u1100\u1161", "\u1100\u1161\u11A8", "\uAC00\u11A8", "\u0958", "\uF900",
             "\u0915\u093C", "x\u0301\u0301\u0301", "\u0301start", "\u1E9B\u0323", "i\u0307", "\u00C5\u0301",
             "\u0CC6\u0CD5", "\u0B47\u0B3E", "s\u0323\u0307", "\u2000", "\u0344", "q\u0307\u0323"]
ODD = ["\u0085", "\u00A0", "\u2028", "\u2029", "\u3000", "\u180E", "\u200B", "\u200D", "\uFEFF", "\u1680", "\u202F",
       "\u205F", "\u00AD", "ſ", "K", "İ", "ǅ", "\u000B", "\u000C", "\t", "\r", "\x00", "\x1b", "\U0001D400", "\U00010400",
       "\uFFFD", "\uE000", "Ⅻ", "½", "²", "𝟘", "①"]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
           "<tool_response>", "</tool_response>", "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>",
           "<|reserved_special_token_7|>", "<|im_sta", "<|endoftext", "<<|im_end|>>", "<|fim_prefix|>",
           "<|vision_start|>", "<|box_end|>"]


def prose():
    out = []
    for _ in range(R.randint(20, 200)):
        w = R.choice(WORDS)
        r = R.random()
        if r < 0.08:
            w = w.capitalize()
        elif r < 0.1:
            w = w.upper()
        elif r < 0.14:
            w += R.choice(CONTR)
        elif r < 0.17:
            w = str(R.randint(0, 10 ** R.randint(1, 8)))
        elif r < 0.19:
            w = R.choice(["(", "\"", "'", "[", "«", "“"]) + w + R.choice([")", "\"", "'", "]", "»", "”"])
        out.append(w)
        if R.random() < 0.1:
            out[-1] += R.choice([",", ".", ";", ":", "!", "?", "...", " -", "—"])
    sep = R.choice([" ", " ", " ", "  "])
    text = sep.join(out)
    if R.random() < 0.3:
        text = text.replace(". ", ".\n" if R.random() < 0.5 else ".\r\n")
    return text


def code():
    lines = []
    ind = R.choice(["    ", "  ", "\t"])
    for _ in range(R.randint(5, 60)):
        depth = R.randint(0, 4)
        kind = R.random()
        name = R.choice(WORDS) + "_" + R.choice(WORDS)
        if kind < 0.2:
            l = f"def {name}(x, y={R.randint(0, 99)}):"
        elif kind < 0.4:
            l = f"if ({name} != NULL && {name}->len >= {R.randint(0, 4096)}) {{"
        elif kind < 0.55:
            l = f"return {name}[{R.randint(0, 9)}] * 0x{R.randint(0, 2**32):08x} + {R.random():.6f};"
        elif kind < 0.65:
            l = f"// TODO({R.choice(WORDS)}): don't {R.choice(WORDS)} the {R.choice(WORDS)}'s {name} ..."
        elif kind < 0.75:
            l = f"printf(\"%s: %d\\n\", \"{name}\", {name}++);"
        elif kind < 0.85:
            l = "}" if R.random() < 0.5 else "};"
        else:
            l = f"{name} = {{'k': [{', '.join(str(R.randint(-999, 999)) for _ in range(R.randint(1, 8)))}]}}  # {R.choice(WORDS)}"
        trail = R.choice(["", "", "", " ", "  ", "\t"])
        lines.append(ind * depth + l + trail)
        if R.random() < 0.1:
            lines.append("")
    nl = "\r\n" if R.random() < 0.15 else "\n"
    return nl.join(lines) + (nl if R.random() < 0.5 else "")


def rand_json(depth=0):
    r = R.random()
    if depth > 3 or r < 0.3:
        return R.choice([R.randint(-10**9, 10**9), R.random() * 1000, True, False, None, R.choice(WORDS),
                         script_text(R.randint(1, 10)), R.choice(EMOJI)])
    if r < 0.65:
        return {R.choice(WORDS) + str(R.randint(0, 99)): rand_json(depth + 1) for _ in range(R.randint(1, 6))}
    return [rand_json(depth + 1) for _ in range(R.randint(0, 6))]


def jsontext():
    v = rand_json()
    return json.dumps(v, ensure_ascii=R.random() < 0.3, indent=R.choice([None, 2, 4]))


def script_text(n=None):
    sc = SCRIPTS[R.choice(list(SCRIPTS))]
    words = []
    for _ in range(n or R.randint(3, 60)):
        words.append("".join(R.choice(sc) for _ in range(R.randint(1, 8))))
    sep = "" if sc is SCRIPTS["cjk"] and R.random() < 0.6 else " "
    return sep.join(words)


def mixed():
    parts = []
    for _ in range(R.randint(5, 40)):
        r = R.random()
        if r < 0.2:
            parts.append(R.choice(EMOJI) * R.randint(1, 3))
        elif r < 0.35:
            parts.append(R.choice(COMBINING))
        elif r < 0.45:
            parts.append(R.choice(ODD) * R.randint(1, 3))
        elif r < 0.55:
            parts.append(str(R.randint(0, 9)) * R.randint(1, 40) + "".join(str(R.randint(0, 9)) for _ in range(R.randint(0, 60))))
        elif r < 0.65:
            parts.append("".join(R.choice([" ", "\t", "\n", "\r\n", "\r", "  ", "\u00a0"]) for _ in range(R.randint(1, 30))))
        elif r < 0.75:
            parts.append(R.choice(SPECIAL))
        elif r < 0.85:
            parts.append(script_text(R.randint(1, 5)))
        else:
            parts.append(R.choice(WORDS) + R.choice(CONTR))
        parts.append(R.choice(["", " ", "  ", "\n", ""]))
    return "".join(parts)


GEN = [(prose, 0.3), (code, 0.15), (jsontext, 0.12), (script_text, 0.23), (mixed, 0.2)]


def doc():
    r = R.random()
    acc = 0
    for g, p in GEN:
        acc += p
        if r < acc:
            return g()
    return mixed()


def main():
    total = 0
    target = int(megabytes * 1024 * 1024)
    docs = []
    # fixed edge cases first
    docs += ["", " ", "\n", "a", "'s", "'S", "'ſ", "a'ſb", "x'Sy", "  hello", "\n\n\n", " \n \n ", "1234567",
             "a\r\nb", "   ", "\t\t", "<|im_start|>user\nhi<|im_end|>", "<|endoftext|><|endoftext|>", "é", "e\u0301",
             "\u1100\u1161\u11A8", "😀", "👨‍👩‍👧‍👦", "\u00a0a", "a\u00a0", " " * 300, "9" * 500, "ab" * 700,
             "z" * 3000, "\u3000\u3000x", "K'K", "ǅ'LL"]
    while total < target:
        d = doc()
        if R.random() < 0.25:
            d = d + R.choice(["\n\n", "\r\n", " ", ""]) + doc()
        docs.append(d)
        total += len(d.encode("utf-8"))
    with open(out, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")


main()
