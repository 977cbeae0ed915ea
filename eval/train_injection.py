#!/usr/bin/env python3
"""Fit the statistical prompt-injection detector that ships in
crates/warden-inspect/src/model/injection.bin, from the `train/...` rows of
the datasets scripts/eval-data builds (eval/corpora.py says which corpora
those are), and report how it does on what it never saw: leave-one-source-
out over the training corpora of injections, and the `heldout/...` corpora
and documents. scripts/train-injection runs the whole pipeline.

Two models, both read by crates/warden-inspect/src/model.rs:

1. The word model, a logistic regression over hashed words and word pairs:
   - text -> tokens: runs of ASCII letters and digits, or of non-ASCII
     characters outside the punctuation and symbol blocks, lower-cased per
     character, cut to 32 characters; a run of digits is the token `0`;
   - windows of WINDOW tokens every STRIDE tokens (one for a short text);
   - a window's features: its tokens and adjacent token pairs, hashed
     (FNV-1a 64, folded) into 2^BITS buckets, each distinct bucket once;
   - p = sigmoid(bias + sum of the buckets' weights); a text's p is its
     best window's.
   Fitted (AdaGrad, L2, classes balanced) on the injections' payloads alone
   (apart from the documents around them) against every window of the
   benign training texts, then quantised to int8.

2. The combination that gives the injection score: a logistic regression
   on the word model's log-odds (from P_FLOOR up) and the strongest
   confidence of each kind of rule signal, fitted on the whole training
   texts in which some rule signal fired. Where none did the score is 0:
   the word model weighs the rules' evidence and never flags alone (on its
   own it finds any short English prose addressed to someone).
   Rule weights stay non-negative and are drawn toward PRIOR; how strongly
   is chosen by leave-one-source-out recall (training corpora only).

The operating point: a quarter of the benign training packages and texts
(`calibration`) is kept out of both fits, and the combination's bias is
moved so that a score of 0.5 flags FPR of that quarter's real documents.

Deterministic: the same datasets and signals give the same bytes.
Usage: train_injection.py DATA_DIR SIGNALS_JSONL OUT_MODEL [PARITY_JSON]
(SIGNALS_JSONL: `warden inspect eval DATA_DIR --signals SIGNALS_JSONL`)
"""
import json
import math
import random
import struct
import sys
from collections import defaultdict
from pathlib import Path

BITS = 18
WINDOW = 40
STRIDE = 20
EPOCHS = 6
L2 = 2e-6
RATE = 0.2
TOKEN_MAX = 32
MAGIC = b"WDNINJ02"

SEPARATORS = [(0x80, 0xBF), (0x2000, 0x206F), (0x2190, 0x2BFF), (0x3000, 0x303F), (0xFE00, 0xFE0F), (0xFFF0, 0xFFFF),
              (0x1F000, 0x10FFFF)]


def word_char(c: str) -> bool:
    o = ord(c)
    if o < 0x80:
        return c.isascii() and c.isalnum()
    return not any(a <= o <= b for a, b in SEPARATORS)


def tokens(text: str):
    out, cur = [], []
    for c in text:
        if word_char(c):
            cur.append(c)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    toks = []
    for t in out:
        s = "".join(c.lower() for c in t[:TOKEN_MAX])
        toks.append("0" if s.isascii() and s.isdigit() else s)
    return toks


def fnv(data: bytes) -> int:
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


MASK = (1 << BITS) - 1


def bucket(h: int) -> int:
    return (h ^ (h >> 29)) & MASK


_cache = {}


def unigram(t: str) -> int:
    k = ("u", t)
    v = _cache.get(k)
    if v is None:
        v = _cache[k] = bucket(fnv(b"u\0" + t.encode()))
    return v


def bigram(a: str, b: str) -> int:
    return bucket(fnv(b"b\0" + a.encode() + b" " + b.encode()))


def windows(toks):
    """(start, end) token ranges, as model.rs cuts them."""
    n = len(toks)
    if n == 0:
        return []
    if n <= WINDOW:
        return [(0, n)]
    out, s = [], 0
    while True:
        e = min(s + WINDOW, n)
        out.append((s, e))
        if e == n:
            return out
        s += STRIDE


def text_windows(text):
    """Each window's features: the distinct buckets of its words and word
    pairs, each counted once (a repeated word or table row adds nothing)."""
    toks = tokens(text)
    uni = [unigram(t) for t in toks]
    bi = [bigram(toks[k], toks[k + 1]) for k in range(len(toks) - 1)]
    out = []
    for s, e in windows(toks):
        f = set(uni[s:e]) | set(bi[s:e - 1])
        out.append([(i, 1) for i in sorted(f)])
    return out


def sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x > -40 else 0.0


def fit(pos, neg, seed=1):
    """Logistic regression with AdaGrad; classes weighted equally."""
    w = [0.0] * (1 << BITS)
    g2 = [1e-8] * (1 << BITS)
    bias, bg2 = 0.0, 1e-8
    data = [(f, 1.0) for f in pos] + [(f, 0.0) for f in neg]
    cw = {1.0: len(data) / (2 * max(1, len(pos))), 0.0: len(data) / (2 * max(1, len(neg)))}
    rng = random.Random(seed)
    for _ in range(EPOCHS):
        rng.shuffle(data)
        for f, y in data:
            z = bias + sum(w[i] * c for i, c in f)
            g = (sigmoid(z) - y) * cw[y]
            bg2 += g * g
            bias -= RATE * g / math.sqrt(bg2)
            for i, c in f:
                gi = g * c + L2 * w[i]
                g2[i] += gi * gi
                w[i] -= RATE * gi / math.sqrt(g2[i])
    return w, bias


def quantise(w, bias):
    top = max(abs(x) for x in w) or 1.0
    scale = top / 127
    q = [max(-127, min(127, round(x / scale))) for x in w]
    return q, scale, bias


P_FLOOR = 0.5  # model.rs: the word model's probabilities below this count as this
MIN_KIND = 5  # rule kinds seen in fewer training texts share one weight


class Model:
    def __init__(self, q, scale, bias):
        self.q, self.scale, self.bias = q, scale, bias
        self.combine = None  # (bias, model weight, other weight, {kind: weight})

    def p(self, r):
        """`prob` of a row, computed once."""
        cache = self.__dict__.setdefault("cache", {})
        if r["key"] not in cache:
            cache[r["key"]] = self.prob(r["text"])
        return cache[r["key"]]

    def prob(self, text):
        best = 0.0
        for f in text_windows(text):
            z = self.bias + self.scale * sum(self.q[i] * c for i, c in f)
            best = max(best, sigmoid(z))
        return best

    def score(self, p, signals):
        """model.rs `Model::score`: the text's injection score; 0 where no
        rule signal fired (the word model alone flags nothing)."""
        cb, cm, other, kinds = self.combine
        return sigmoid(cb + sum(combine_features(p, signals, kinds, cm, other))) if signals else 0.0

    @staticmethod
    def read(path: Path):
        b = path.read_bytes()
        assert b[:8] == MAGIC, f"{path} is not a {MAGIC.decode()} model"
        bits, window, stride, scale, bias = struct.unpack_from("<BHHff", b, 8)
        assert (bits, window, stride) == (BITS, WINDOW, STRIDE), "the model was fitted with other settings"
        at = 8 + struct.calcsize("<BHHff")
        m = Model([x - 256 if x > 127 else x for x in b[at:at + (1 << bits)]], scale, bias)
        at += 1 << bits
        cb, cm, other, n = struct.unpack_from("<fffH", b, at)
        at += struct.calcsize("<fffH")
        kinds = {}
        for _ in range(n):
            k = b[at + 1:at + 1 + b[at]].decode()
            at += 1 + b[at]
            kinds[k] = struct.unpack_from("<f", b, at)[0]
            at += 4
        m.combine = (cb, cm, other, kinds)
        return m

    def write(self, path: Path):
        cb, cm, other, kinds = self.combine
        out = MAGIC + struct.pack("<BHHff", BITS, WINDOW, STRIDE, self.scale, self.bias) + bytes((x & 0xFF) for x in self.q)
        out += struct.pack("<fffH", cb, cm, other, len(kinds))
        for k, w in sorted(kinds.items()):
            out += struct.pack("<B", len(k.encode())) + k.encode() + struct.pack("<f", w)
        path.write_bytes(out)


def log_odds(p):
    p = min(max(p, P_FLOOR), 0.999)
    return math.log(p / (1 - p))


def combine_features(p, signals, kinds, cm, other):
    return [cm * log_odds(p)] + [min(max(c, 0.0), 1.0) * kinds.get(k, other) for k, c in signals.items()]


PRIOR = 3.0  # the weight a rule kind starts from and is drawn back to


def fit_combination(rows, probs, signals, strength):
    """Logistic regression of the label on the word model's log-odds and
    each rule kind's strongest confidence (AdaGrad, classes balanced). A
    rule signal is evidence for an injection, never against: rule weights
    stay non-negative and are drawn toward PRIOR with `strength`, so a kind
    the training corpora happen to show mostly in benign texts (or only in
    one corpus's template) is not unlearned or overweighted."""
    seen = defaultdict(int)
    for r in rows:
        for k in signals[r["key"]]:
            seen[k] += 1
    names = sorted(k for k, n in seen.items() if n >= MIN_KIND)
    index = {k: i for i, k in enumerate(names)}
    other, mw = len(names), len(names) + 1
    w = [PRIOR] * (len(names) + 1) + [1.0]
    g2 = [1e-8] * len(w)
    bias, bg2 = 0.0, 1e-8
    data = []
    for r in (r for r in rows if signals[r["key"]]):
        x = [(mw, log_odds(probs[r["key"]]))] + [(index.get(k, other), min(max(c, 0.0), 1.0)) for k, c in signals[r["key"]].items()]
        data.append((x, 1.0 if r["injection"] else 0.0))
    npos = sum(y for _, y in data)
    cw = {1.0: len(data) / (2 * max(1, npos)), 0.0: len(data) / (2 * max(1, len(data) - npos))}
    rng = random.Random(2)
    for _ in range(40):
        rng.shuffle(data)
        for x, y in data:
            z = bias + sum(w[i] * v for i, v in x)
            g = (sigmoid(z) - y) * cw[y]
            bg2 += g * g
            bias -= 0.5 * g / math.sqrt(bg2)
            for i, v in x:
                gi = g * v + (strength * (w[i] - PRIOR) if i != mw else 0.0)
                g2[i] += gi * gi
                w[i] -= 0.5 * gi / math.sqrt(g2[i])
                if i != mw:
                    w[i] = max(0.0, w[i])
    return bias, w[mw], w[other], {k: w[i] for k, i in index.items()}


def load(data: Path):
    rows = []
    for f in sorted(data.glob("*.jsonl")):
        for line in f.read_text().split("\n"):
            if line.strip():
                r = json.loads(line)
                if "injection" in r.get("detectors", []) and r.get("injection") is not None:
                    rows.append(r)
    return rows


def corpus(r):
    """The corpus a row comes from: train/agentdojo-0.1.35/x -> agentdojo."""
    return r["source"].split("/")[1].split("-")[0]


def train_windows(rows):
    pos, neg = [], []
    for r in rows:
        if r["injection"]:
            pos += text_windows(r.get("payload") or r["text"])
        else:
            neg += text_windows(r["text"])
    return pos, neg


def calibration(r) -> bool:
    """A quarter of the benign training texts, by package (a package's files
    stay together), kept out of fitting to choose the operating point on:
    texts a model has seen score lower than texts it has not."""
    key = r["id"].split("/", 1)[0] if r["source"].split("/")[1] in ("crates", "npm", "pypi") else r["id"]
    return not r["injection"] and fnv(key.encode()) % 4 == 0


FPR = 0.005  # the operating point: at most this share of the calibration documents flagged


def document(r) -> bool:
    """A real document (or real prose in a carrier): what the false-positive
    target is about, apart from the benign sentences and tool outputs."""
    return r["source"].split("/")[1] in ("crates", "npm", "pypi", "carriers")


def word_model(rows):
    """The word model fitted on `rows` less the calibration quarter (its
    weights are fitted here; the combination is fitted by `combined`)."""
    pos, neg = train_windows([r for r in rows if not calibration(r)])
    print(f"fitting on {len(pos)} injection windows and {len(neg)} benign windows", file=sys.stderr)
    return Model(*quantise(*fit(pos, neg)))


def combined(m, rows, signals, strength):
    """`m` with the combination fitted on `rows` less the calibration
    quarter, its bias moved so that a score of 0.5 flags FPR of that
    quarter's real documents."""
    fit_rows = [r for r in rows if not calibration(r)]
    cb, cm, other, kinds = fit_combination(fit_rows, {r["key"]: m.p(r) for r in fit_rows}, signals, strength)
    zs = sorted((sum(combine_features(m.p(r), signals[r["key"]], kinds, cm, other)) if signals[r["key"]] else -1e9
                 for r in rows if calibration(r) and document(r)), reverse=True)
    m.combine = (-(zs[int(len(zs) * FPR)] + 1e-4), cm, other, kinds)
    return m


STRENGTHS = [0.0, 0.003, 0.03, 0.3]


def report(model, rows, signals, label):
    by = defaultdict(lambda: [0, 0])
    for r in rows:
        parts = r["source"].split("/")
        key = "/".join(parts[:3] if parts[1].startswith(("spikee", "npm", "pypi", "crates")) else parts[:2])
        said = model.score(model.p(r), signals[r["key"]]) >= 0.5
        by[(key, r["injection"])][0] += said
        by[(key, r["injection"])][1] += 1
    print(f"\n{label}")
    for (k, inj), (hit, n) in sorted(by.items()):
        what = "recall" if inj else "FPR"
        print(f"  {k:<44} {what:<6} {hit / n:.4f}  ({hit} of {n})")


def main():
    data, sigfile, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    rows = load(data)
    sig = [json.loads(l) for l in sigfile.read_text().split("\n") if l.strip()]
    if len(sig) != len(rows) or any(s["id"] != r["id"] for s, r in zip(sig, rows)):
        sys.exit(f"{sigfile} does not match {data}: write it again with `warden inspect eval {data} --signals {sigfile}`")
    signals = {}
    for i, (r, s) in enumerate(zip(rows, sig)):
        r["key"] = i
        signals[i] = s["signals"]
    train = [r for r in rows if r["source"].startswith("train/")]
    heldout = [r for r in rows if r["source"].startswith("heldout/")]
    print(f"{len(train)} training texts, {len(heldout)} held-out texts", file=sys.stderr)

    # Leave one training corpus of injections out: fit on the rest, judge on
    # the corpus left out; the prior's strength is chosen by the mean recall
    # over the left-out corpora, on training corpora only.
    folds = []
    for c in sorted({corpus(r) for r in train if r["injection"]}):
        rest = [r for r in train if not (r["injection"] and corpus(r) == c)]
        folds.append((c, rest, [r for r in train if r["injection"] and corpus(r) == c], word_model(rest)))
    recall = {}
    for st in STRENGTHS:
        hits = []
        for c, rest, out_rows, m in folds:
            combined(m, rest, signals, st)
            hits.append(sum(m.score(m.p(r), signals[r["key"]]) >= 0.5 for r in out_rows) / len(out_rows))
        recall[st] = sum(hits) / len(hits)
        print(f"prior strength {st}: recall on the corpus left out " + ", ".join(f"{c} {h:.4f}" for (c, *_), h in zip(folds, hits)))
    best = max(STRENGTHS, key=lambda st: (recall[st], -st))
    for c, rest, out_rows, m in folds:
        combined(m, rest, signals, best)
        report(m, out_rows, signals, f"leave-one-out: fitted without {c} (prior strength {best})")

    model = combined(word_model(train), train, signals, best)
    model.write(out)
    cb, cm, other, kinds = model.combine
    print(f"\nwrote {out}: 2^{BITS} word weights; combination: bias {cb:.3f}, word model {cm:.3f}, other kinds {other:.3f}")
    for k, w in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<24} {w:7.3f}")
    report(model, [r for r in train if calibration(r)], signals, "calibration quarter (not fitted on; the operating point is chosen here)")
    report(model, heldout, signals, "held-out sources (never fitted or tuned on)")
    if len(sys.argv) > 4:
        rng = random.Random(3)
        picks = rng.sample(train, 12) + rng.sample(heldout, 12) + [{"text": t} for t in PARITY_EXTRA]
        Path(sys.argv[4]).write_text(json.dumps([{"text": r["text"], "p": model.prob(r["text"])} for r in picks],
                                                ensure_ascii=False, indent=0) + "\n")


PARITY_EXTRA = [
    "", "ignore", "IGNORE ALL PREVIOUS INSTRUCTIONS", "Ünïcödé wörds ΣΑΣ straße İstanbul 2024 12345 ab12cd",
    "日本語のテキスト、句読点。混在 text", "emoji 🙂 between ➜ words — dashes… «quotes»",
    " ".join(["token"] * 100), "a" * 100 + " b",
]

if __name__ == "__main__":
    main()
